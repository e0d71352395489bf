//! Option schemas: the one table each component (source, stage, sink) declares about its keys.
//!
//! An `OptionSpec` names a key, its type, its default (written as a TOML literal) and one line of
//! docs. The same table drives three things, so they can never disagree: validation of a
//! pipeline file (every problem at once, with file:line:column and a "did you mean"), typed
//! access with defaults when a component is built (`Options`), and `lai stages` documentation.

pub mod tree;

use std::fmt;
use std::ops::Range;
use std::time::Duration;

use tree::{Entry, LineIndex, Node, Value};

/// The type of an option's value; validation checks it and `lai stages` prints it.
#[derive(Clone, Copy, Debug)]
pub enum Ty {
    Str,
    /// One string from a fixed set.
    Choice(&'static [&'static str]),
    Int {
        min: i64,
        max: i64,
    },
    /// A number; integers are accepted too (`1` for `1.0`).
    Float {
        min: f64,
        max: f64,
    },
    Bool,
    /// A string like "250ms", "2s", "1.5m".
    Duration,
    StrList,
    /// A list of strings, each from a fixed set.
    ChoiceList(&'static [&'static str]),
    /// A table whose values are strings: `{ name = "value" }`.
    StrTable,
    /// A table whose values are lists of strings: `{ name = ["a", "b"] }`.
    StrListTable,
    /// A model: a catalog name, or a table naming its files by path (see `ModelShape`).
    Model(&'static ModelShape),
}

/// What a model option takes besides a catalog name: `{ path = "...", sha256 = "..." }` for
/// the main file, plus further files by role (each a path, or `{ path, sha256 }`), and for text
/// encoders the settings a catalog entry keeps in `[model.encoder]`.
#[derive(Debug)]
pub struct ModelShape {
    /// The engine that loads it: "whisper", "llama" or "onnx".
    pub engine: &'static str,
    /// The role of the file `path` names ("model", or "vad" for a voice-activity model).
    pub role: &'static str,
    /// Roles of further files, and whether each must be given.
    pub files: &'static [(&'static str, bool)],
    /// Whether `max_tokens`, `pooling` and `normalize` may be set.
    pub encoder: bool,
    /// Whether token vectors are pooled into one (sentence embeddings), so pooling must be known.
    pub pooled: bool,
}

/// Keys of a model table besides the file roles.
const MODEL_KEYS: &[&str] = &["path", "sha256"];
/// Keys of a model table for a text encoder.
const ENCODER_KEYS: &[&str] = &["max_tokens", "pooling", "normalize"];
/// Poolings of a sentence-embedding model.
pub const POOLINGS: &[&str] = &["mean", "cls"];

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ty::Str => write!(f, "string"),
            Ty::Choice(c) => write!(f, "one of {}", c.join(" | ")),
            Ty::Int { min, max } if *max == i64::MAX => write!(f, "integer >= {min}"),
            Ty::Int { min, max } => write!(f, "integer {min}..={max}"),
            Ty::Float { min, max } => write!(f, "number {min}..={max}"),
            Ty::Bool => write!(f, "boolean"),
            Ty::Duration => write!(f, "duration (\"50ms\", \"2s\", \"1m\")"),
            Ty::StrList => write!(f, "list of strings"),
            Ty::ChoiceList(c) => write!(f, "list of: {}", c.join(", ")),
            Ty::StrTable => write!(f, "table of strings"),
            Ty::StrListTable => write!(f, "table of string lists"),
            Ty::Model(shape) => {
                write!(f, "a catalog name, or {{ path = \"FILE\", sha256 = \"...\"")?;
                for (role, required) in shape.files {
                    let optional = if *required { "" } else { " (optional)" };
                    write!(f, ", {role} = \"FILE\"{optional}")?;
                }
                if shape.encoder {
                    write!(
                        f,
                        ", max_tokens = 512, pooling = \"mean\", normalize = true"
                    )?;
                }
                write!(f, " }} ({} engine; sha256 optional)", shape.engine)
            }
        }
    }
}

/// Whether an option must be given, may be left out, or has a default.
#[derive(Clone, Copy, Debug)]
pub enum Default {
    Required,
    /// May be left out; the component then does without it.
    Unset,
    /// A TOML literal, parsed like a user's value (`"64"`, `"\"text\""`, `"[]"`).
    Value(&'static str),
}

/// One documented key of a component.
#[derive(Clone, Copy, Debug)]
pub struct OptionSpec {
    pub name: &'static str,
    pub ty: Ty,
    pub default: Default,
    pub doc: &'static str,
    /// The option changes how fast a run goes, or where (the GPU gives the CPU's results to
    /// within rounding), not what it writes: it is left out of the resume key.
    pub speed_only: bool,
}

/// Shorthand for building spec tables.
pub const fn opt(name: &'static str, ty: Ty, default: Default, doc: &'static str) -> OptionSpec {
    OptionSpec {
        name,
        ty,
        default,
        doc,
        speed_only: false,
    }
}

impl OptionSpec {
    /// Marks a speed-only option (see `speed_only`).
    pub const fn speed(self) -> OptionSpec {
        OptionSpec {
            speed_only: true,
            ..self
        }
    }
}

/// One kind of component in a registry: its name, docs, option schema and how to build it.
pub struct ComponentKind<T: ?Sized + 'static> {
    pub name: &'static str,
    pub doc: &'static str,
    pub options: &'static [OptionSpec],
    /// Builds the component from validated options; reports problems into `diag` and returns
    /// `None` when it cannot. Must not load models or open outputs; it may read the small files
    /// its options name (prompt templates, schemas), via `Diagnostics::relative_path`.
    pub build: fn(&Options, &mut Diagnostics) -> Option<Box<T>>,
}

/// A problem in a pipeline file, located at `file:line:column`.
#[derive(Clone, Debug)]
pub struct Problem {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// Collects every problem found in one file, turning byte spans into line and column.
pub struct Diagnostics {
    file: String,
    text: String,
    index: LineIndex,
    pub problems: Vec<Problem>,
    /// Files the components read while building (prompts, schemas, examples): part of what
    /// the pipeline means, so part of its resume key.
    pub reads: Vec<std::path::PathBuf>,
}

impl Diagnostics {
    pub fn new(file: &str, text: &str) -> Self {
        Diagnostics {
            file: file.to_string(),
            text: text.to_string(),
            index: LineIndex::new(text),
            problems: Vec::new(),
            reads: Vec::new(),
        }
    }

    pub fn error(&mut self, span: &Range<usize>, message: impl Into<String>) {
        let (line, column) = self.index.locate(&self.text, span.start);
        self.problems.push(Problem {
            file: self.file.clone(),
            line,
            column,
            message: message.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }

    /// A path written in the file, taken relative to the file's folder (absolute paths as is),
    /// for a file the component reads now.
    pub fn relative_path(&mut self, path: &str) -> std::path::PathBuf {
        let path = self.path_in_file(path);
        self.reads.push(path.clone());
        path
    }

    /// A path written in the file, taken relative to the file's folder (absolute paths as is),
    /// for a file used later (a model, verified by its sha256 when the run starts).
    pub fn path_in_file(&self, path: &str) -> std::path::PathBuf {
        std::path::Path::new(&self.file)
            .parent()
            .unwrap_or(std::path::Path::new(""))
            .join(path)
    }

    /// The file's name as messages give it.
    pub fn file(&self) -> &str {
        &self.file
    }
}

/// The validated keys of one component, with typed access that falls back to defaults.
///
/// Getters assume validation passed: every key present has the declared type.
#[derive(Clone, Debug)]
pub struct Options {
    /// How messages name this component: "[[stage]] 2 (redact)".
    pub context: String,
    /// Span of the component's table, for problems about missing keys.
    pub span: Range<usize>,
    spec: &'static [OptionSpec],
    entries: Vec<Entry>,
}

/// A `name = value` pair from a table-valued option, with where it was written.
pub struct Named<T> {
    pub name: String,
    pub value: T,
    pub span: Range<usize>,
}

impl Options {
    /// Checks `entries` against `spec`; `reserved` keys (like `use`) were handled by the caller.
    pub fn validate(
        context: String,
        span: Range<usize>,
        entries: &[Entry],
        spec: &'static [OptionSpec],
        reserved: &[&str],
        diag: &mut Diagnostics,
    ) -> Options {
        let mut kept = Vec::new();
        for entry in entries {
            if reserved.contains(&entry.key.as_str()) {
                continue;
            }
            let Some(option) = spec.iter().find(|o| o.name == entry.key) else {
                let known: Vec<&str> = spec
                    .iter()
                    .map(|o| o.name)
                    .chain(reserved.iter().copied())
                    .collect();
                diag.error(
                    &entry.key_span,
                    format!(
                        "unknown key `{}` in {context}; {}",
                        entry.key,
                        suggest(&entry.key, &known)
                    ),
                );
                continue;
            };
            match check_type(&entry.node, option.ty) {
                Ok(()) => kept.push(entry.clone()),
                Err((span, why)) => diag.error(
                    &span,
                    format!("`{}` in {context} must be {}: {why}", entry.key, option.ty),
                ),
            }
        }
        for option in spec {
            if matches!(option.default, Default::Required)
                && !entries.iter().any(|e| e.key == option.name)
            {
                diag.error(
                    &span,
                    format!(
                        "missing key `{}` in {context}; add `{} = ...` ({})",
                        option.name, option.name, option.doc
                    ),
                );
            }
        }
        Options {
            context,
            span,
            spec,
            entries: kept,
        }
    }

    /// Options with every key at its default.
    #[cfg(test)]
    pub fn defaults(context: &str, spec: &'static [OptionSpec]) -> Options {
        Options {
            context: context.to_string(),
            span: 0..0,
            spec,
            entries: Vec::new(),
        }
    }

    /// The user's value, else the default; `None` for an unset optional key.
    pub fn node(&self, key: &str) -> Option<Node> {
        if let Some(e) = self.entries.iter().find(|e| e.key == key) {
            return Some(e.node.clone());
        }
        let option = self
            .spec
            .iter()
            .find(|o| o.name == key)
            .unwrap_or_else(|| panic!("option `{key}` is not in its spec. This is a bug."));
        match option.default {
            Default::Value(literal) => Some(
                tree::parse_value(literal)
                    .unwrap_or_else(|| panic!("default of `{key}` is not TOML. This is a bug.")),
            ),
            Default::Required | Default::Unset => None,
        }
    }

    /// Every option with its effective value (the user's, else the default), except the
    /// speed-only ones: two tables that mean the same give the same text.
    pub fn effective(&self) -> String {
        let values: Vec<String> = self
            .spec
            .iter()
            .filter(|o| !o.speed_only)
            .filter_map(|o| Some(format!("{}={}", o.name, self.node(o.name)?.canonical())))
            .collect();
        values.join(";")
    }

    /// Whether the table sets `key` itself (rather than leaving it to its default).
    pub fn given(&self, key: &str) -> bool {
        self.entries.iter().any(|e| e.key == key)
    }

    /// Span of the user's value for `key`, or of the component table.
    pub fn span_of(&self, key: &str) -> Range<usize> {
        self.entries
            .iter()
            .find(|e| e.key == key)
            .map_or(self.span.clone(), |e| e.node.span.clone())
    }

    pub fn opt_str(&self, key: &str) -> Option<String> {
        match self.node(key)?.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn str(&self, key: &str) -> String {
        self.opt_str(key).unwrap_or_default()
    }

    pub fn int(&self, key: &str) -> i64 {
        match self.node(key).map(|n| n.value) {
            Some(Value::Int(n)) => n,
            _ => 0,
        }
    }

    pub fn float(&self, key: &str) -> f64 {
        match self.node(key).map(|n| n.value) {
            Some(Value::Float(x)) => x,
            Some(Value::Int(n)) => n as f64,
            _ => 0.0,
        }
    }

    pub fn usize(&self, key: &str) -> usize {
        usize::try_from(self.int(key)).unwrap_or(0)
    }

    pub fn bool(&self, key: &str) -> bool {
        matches!(self.node(key).map(|n| n.value), Some(Value::Bool(true)))
    }

    pub fn opt_duration(&self, key: &str) -> Option<Duration> {
        self.node(key).map(|_| self.duration(key))
    }

    pub fn duration(&self, key: &str) -> Duration {
        self.opt_str(key)
            .and_then(|s| parse_duration(&s))
            .unwrap_or_default()
    }

    pub fn str_list(&self, key: &str) -> Vec<String> {
        match self.node(key).map(|n| n.value) {
            Some(Value::Array(items)) => items.into_iter().filter_map(|n| as_str(&n)).collect(),
            _ => Vec::new(),
        }
    }

    /// Entries of a table-valued option whose values are strings.
    pub fn str_table(&self, key: &str) -> Vec<Named<String>> {
        self.table(key, as_str)
    }

    /// Entries of a table-valued option whose values are lists of strings.
    pub fn str_list_table(&self, key: &str) -> Vec<Named<Vec<String>>> {
        self.table(key, |n| match &n.value {
            Value::Array(items) => Some(items.iter().filter_map(as_str).collect()),
            _ => None,
        })
    }

    fn table<T>(&self, key: &str, get: impl Fn(&Node) -> Option<T>) -> Vec<Named<T>> {
        match self.node(key).map(|n| n.value) {
            Some(Value::Table(entries)) => entries
                .iter()
                .filter_map(|e| {
                    Some(Named {
                        name: e.key.clone(),
                        value: get(&e.node)?,
                        span: e.node.span.clone(),
                    })
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

fn as_str(node: &Node) -> Option<String> {
    match &node.value {
        Value::Str(s) => Some(s.clone()),
        _ => None,
    }
}

/// Parses "250ms", "2s", "1.5m", "1h".
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.trim().parse().ok()?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}

/// Checks one value against a type; on failure, the span to blame and what was found.
fn check_type(node: &Node, ty: Ty) -> Result<(), (Range<usize>, String)> {
    let found = || {
        (
            node.span.clone(),
            format!("found {}", node.value.type_name()),
        )
    };
    match (ty, &node.value) {
        (Ty::Str, Value::Str(_)) | (Ty::Bool, Value::Bool(_)) => Ok(()),
        (Ty::Choice(choices), Value::Str(s)) => check_choice(node, s, choices),
        (Ty::Int { min, max }, Value::Int(n)) => {
            if (min..=max).contains(n) {
                Ok(())
            } else {
                Err((node.span.clone(), format!("found {n}")))
            }
        }
        (Ty::Float { min, max }, Value::Float(x)) if (min..=max).contains(x) => Ok(()),
        (Ty::Float { min, max }, Value::Int(n)) if (min..=max).contains(&(*n as f64)) => Ok(()),
        (Ty::Float { .. }, Value::Float(x)) => Err((node.span.clone(), format!("found {x}"))),
        (Ty::Float { .. }, Value::Int(n)) => Err((node.span.clone(), format!("found {n}"))),
        (Ty::Duration, Value::Str(s)) => match parse_duration(s) {
            Some(_) => Ok(()),
            None => Err((
                node.span.clone(),
                format!("cannot read \"{s}\" as a duration"),
            )),
        },
        (Ty::StrList, Value::Array(items)) => items.iter().try_for_each(|n| check_type(n, Ty::Str)),
        (Ty::ChoiceList(choices), Value::Array(items)) => items
            .iter()
            .try_for_each(|n| check_type(n, Ty::Choice(choices))),
        (Ty::StrTable, Value::Table(entries)) => entries
            .iter()
            .try_for_each(|e| check_type(&e.node, Ty::Str)),
        (Ty::StrListTable, Value::Table(entries)) => entries
            .iter()
            .try_for_each(|e| check_type(&e.node, Ty::StrList)),
        (Ty::Model(_), Value::Str(_)) => Ok(()),
        (Ty::Model(shape), Value::Table(entries)) => check_model(node, entries, shape),
        _ => Err(found()),
    }
}

fn check_choice(node: &Node, s: &str, choices: &[&str]) -> Result<(), (Range<usize>, String)> {
    if choices.contains(&s) {
        Ok(())
    } else {
        Err((
            node.span.clone(),
            format!("found \"{s}\"; {}", suggest(s, choices)),
        ))
    }
}

/// A model given by path: known keys with the right types, `path` and required files present.
fn check_model(
    node: &Node,
    entries: &[Entry],
    shape: &ModelShape,
) -> Result<(), (Range<usize>, String)> {
    let roles = shape.files.iter().map(|(role, _)| *role);
    let encoder = ENCODER_KEYS.iter().copied().filter(|_| shape.encoder);
    let known: Vec<&str> = MODEL_KEYS
        .iter()
        .copied()
        .chain(roles)
        .chain(encoder)
        .collect();
    for entry in entries {
        let key = entry.key.as_str();
        let checked = match key {
            "path" => check_type(&entry.node, Ty::Str),
            "sha256" => check_sha256(&entry.node),
            "max_tokens" if shape.encoder => {
                check_type(&entry.node, Ty::Int { min: 2, max: 65536 })
            }
            "pooling" if shape.encoder => check_type(&entry.node, Ty::Choice(POOLINGS)),
            "normalize" if shape.encoder => check_type(&entry.node, Ty::Bool),
            _ if shape.files.iter().any(|(role, _)| *role == key) => match &entry.node.value {
                Value::Str(_) => Ok(()),
                Value::Table(file) => check_file_table(&entry.node, file),
                other => Err((
                    entry.node.span.clone(),
                    format!("`{key}` is {}", other.type_name()),
                )),
            },
            _ => Err((
                entry.key_span.clone(),
                format!("unknown key `{key}`; {}", suggest(key, &known)),
            )),
        };
        checked.map_err(|(span, why)| (span, format!("{key}: {why}")))?;
    }
    let required = std::iter::once("path").chain(
        shape
            .files
            .iter()
            .filter(|(_, required)| *required)
            .map(|(role, _)| *role),
    );
    for key in required {
        if !entries.iter().any(|e| e.key == key) {
            return Err((node.span.clone(), format!("missing `{key} = \"FILE\"`")));
        }
    }
    Ok(())
}

/// `{ path = "...", sha256 = "..." }` for one further file of a model.
fn check_file_table(node: &Node, entries: &[Entry]) -> Result<(), (Range<usize>, String)> {
    for entry in entries {
        match entry.key.as_str() {
            "path" => check_type(&entry.node, Ty::Str)?,
            "sha256" => check_sha256(&entry.node)?,
            key => {
                return Err((
                    entry.key_span.clone(),
                    format!("unknown key `{key}`; {}", suggest(key, MODEL_KEYS)),
                ));
            }
        }
    }
    if !entries.iter().any(|e| e.key == "path") {
        return Err((node.span.clone(), "missing `path = \"FILE\"`".into()));
    }
    Ok(())
}

/// A sha256 as 64 hex digits.
fn check_sha256(node: &Node) -> Result<(), (Range<usize>, String)> {
    match &node.value {
        Value::Str(s) if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(()),
        Value::Str(s) => Err((
            node.span.clone(),
            format!("\"{s}\" is not a sha256 (64 hex digits; `sha256sum FILE` prints it)"),
        )),
        other => Err((node.span.clone(), format!("found {}", other.type_name()))),
    }
}

/// "did you mean `x`?" when one name is close, else the list of valid names.
pub fn suggest(wrong: &str, known: &[&str]) -> String {
    let best = known
        .iter()
        .map(|k| (strsim::jaro_winkler(wrong, k), *k))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((_, name)) => format!("did you mean `{name}`?"),
        None => format!("expected one of: {}", known.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Durations accept the units users write and refuse the rest.
    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("3 weeks"), None);
    }

    // A near-miss key gets a suggestion, a far one gets the list.
    #[test]
    fn suggestions() {
        assert_eq!(
            suggest("bach_size", &["batch_size", "workers"]),
            "did you mean `batch_size`?"
        );
        assert!(suggest("zzz", &["batch_size"]).starts_with("expected one of"));
    }
}
