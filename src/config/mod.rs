//! Pipeline files: parse, validate everything, then build components, before any model loads.
//!
//! A pipeline file has top-level keys, one `[input]`, one or more `[[stage]]` and any number of
//! `[[output]]` tables. Each table names a component kind from a registry (`stages::STAGES`,
//! `sources::SOURCES`, `sinks::SINKS`); the kind's option schema validates the table. All problems
//! of a file are collected and returned together; nothing here starts a thread or opens an output.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use crate::component::{SinkSpec, Stage};
use crate::item::sha256_hex;
use crate::options::tree::{self, Entry, Node, Value};
use crate::options::{ComponentKind, Default, Diagnostics, OptionSpec, Options, Problem, Ty, opt};
use crate::pipeline::route::When;
use crate::pipeline::{Pipeline, StagePlan};
use crate::sinks::SINKS;
use crate::sources::SOURCES;
use crate::stages::STAGES;

/// Top-level keys of a pipeline file besides `input`, `stage` and `output`.
const TOP_LEVEL: &[OptionSpec] = &[
    opt(
        "name",
        Ty::Str,
        Default::Unset,
        "Pipeline name; defaults to the file name.",
    ),
    opt(
        "description",
        Ty::Str,
        Default::Value("\"\""),
        "What the pipeline does, for humans.",
    ),
    opt(
        "dead_letter",
        Ty::Str,
        Default::Value("\"{out}/errors.jsonl\""),
        "Where failed items are recorded (id, origin, stage, error; never content).",
    ),
    opt(
        "confine",
        Ty::Choice(&["auto", "required"]),
        Default::Value("\"auto\""),
        "After start-up the kernel holds `lai run` to reading its inputs, models and libraries, writing its outputs and temp files, and connecting only to its stages' endpoints (Landlock, seccomp). auto: whatever this kernel enforces, with a warning for the rest; required: refuse to run unless files and network are both enforced. `lai run --no-confine` turns it off (recorded).",
    ),
];

/// Why a pipeline could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    Unreadable(String),
    Invalid(Vec<Problem>),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Unreadable(why) => write!(f, "{why}"),
            LoadError::Invalid(problems) => {
                for (i, p) in problems.iter().enumerate() {
                    if i > 0 {
                        writeln!(f)?;
                    }
                    write!(f, "{p}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for LoadError {}

/// Reads, validates and builds a pipeline file, collecting every problem.
pub fn load(path: &Path) -> Result<Pipeline, LoadError> {
    let bytes = std::fs::read(path).map_err(|e| {
        LoadError::Unreadable(format!(
            "cannot read pipeline file {}: {e}; check the path (see `ls pipelines/`)",
            path.display()
        ))
    })?;
    let shown = path.display().to_string();
    let text = String::from_utf8(bytes.clone()).map_err(|e| {
        LoadError::Unreadable(format!(
            "{shown}: not UTF-8 text (invalid byte at offset {}); a pipeline file must be UTF-8 TOML",
            e.utf8_error().valid_up_to()
        ))
    })?;
    let mut diag = Diagnostics::new(&shown, &text);
    let doc = match tree::parse_document(&text) {
        Ok(doc) => doc,
        Err(errors) => {
            for e in errors {
                diag.error(&e.span, format!("TOML syntax error: {}", e.message));
            }
            return Err(LoadError::Invalid(diag.problems));
        }
    };
    let pipeline = build(path, &bytes, &doc, &mut diag);
    diag.problems.sort_by_key(|p| (p.line, p.column));
    match pipeline {
        Some(p) if diag.is_empty() => Ok(p),
        _ => Err(LoadError::Invalid(diag.problems)),
    }
}

fn build(path: &Path, bytes: &[u8], doc: &Node, diag: &mut Diagnostics) -> Option<Pipeline> {
    let Value::Table(entries) = &doc.value else {
        unreachable!("a TOML document is a table")
    };
    let top = Options::validate(
        "the pipeline file".into(),
        0..0,
        entries,
        TOP_LEVEL,
        &["input", "stage", "output"],
        diag,
    );

    let source = match find(entries, "input") {
        None => {
            diag.error(
                &(0..0),
                "missing [input] table; add `[input]` with `kind = \"files\"` or `kind = \"jsonl\"`",
            );
            None
        }
        Some(entry) => component(entry, "[input]".into(), "kind", SOURCES, diag),
    };
    let mut config = vec![format!("dead_letter={}", top.str("dead_letter"))];
    let source = source.map(|(source, text)| {
        config.push(format!("input {text}"));
        source
    });

    let stages = match find(entries, "stage") {
        None => {
            diag.error(
                &(0..0),
                "missing [[stage]]; a pipeline needs at least one, e.g. `[[stage]]` with `use = \"redact\"` (see `lai stages`)",
            );
            Vec::new()
        }
        Some(entry) => array_of_tables(entry, "[[stage]]", diag)
            .into_iter()
            .enumerate()
            .filter_map(|(i, table)| stage_plan(table, i + 1, diag))
            .collect(),
    };
    config.extend(stages.iter().map(|(kind, o, when, _)| {
        let when = when
            .as_ref()
            .map_or(String::new(), |w| format!(" when {}", w.describe()));
        format!("stage {kind} {}{when}", o.effective())
    }));
    check_egress(&stages, diag);
    let stages = label_stages(stages);

    let outputs: Vec<Box<dyn SinkSpec>> = match find(entries, "output") {
        None => {
            diag.error(
                &(0..0),
                "missing [[output]]; add one, e.g. `[[output]]` with `kind = \"jsonl\"` and `path = \"{out}/records.jsonl\"`",
            );
            Vec::new()
        }
        Some(entry) => array_of_tables(entry, "[[output]]", diag)
            .into_iter()
            .enumerate()
            .filter_map(|(i, table)| {
                let context = format!("[[output]] {}", i + 1);
                let (sink, text) = component(table, context, "kind", SINKS, diag)?;
                config.push(format!("output {text}"));
                Some(sink)
            })
            .collect(),
    };
    for path in &diag.reads {
        let sha = std::fs::read(path).map_or_else(|_| "unreadable".into(), |b| sha256_hex(&b));
        config.push(format!("file {} {sha}", path.display()));
    }

    let name = top.opt_str("name").unwrap_or_else(|| {
        path.file_stem()
            .map_or("pipeline".into(), |s| s.to_string_lossy().into_owned())
    });
    Some(Pipeline {
        path: path.to_path_buf(),
        sha256: sha256_hex(bytes),
        config: config.join("\n"),
        name,
        description: top.str("description"),
        source: Arc::from(source?),
        stages,
        outputs,
        dead_letter: top.str("dead_letter"),
        confine_required: top.str("confine") == "required",
    })
}

fn find<'a>(entries: &'a [Entry], key: &str) -> Option<&'a Entry> {
    entries.iter().find(|e| e.key == key)
}

/// The tables of a `[[name]]` array, reporting anything else written under that key.
fn array_of_tables<'a>(entry: &'a Entry, what: &str, diag: &mut Diagnostics) -> Vec<&'a Node> {
    match &entry.node.value {
        Value::Array(items) => items
            .iter()
            .filter(|n| {
                let ok = matches!(n.value, Value::Table(_));
                if !ok {
                    diag.error(&n.span, format!("each {what} must be a table"));
                }
                ok
            })
            .collect(),
        other => {
            diag.error(
                &entry.key_span,
                format!(
                    "`{}` must be written as {what} tables, found {}",
                    entry.key,
                    other.type_name()
                ),
            );
            Vec::new()
        }
    }
}

/// Validates one component table: the `selector` key picks the kind from `registry`.
fn component<T: ?Sized>(
    node: impl AsNode,
    context: String,
    selector: &str,
    registry: &'static [ComponentKind<T>],
    diag: &mut Diagnostics,
) -> Option<(Box<T>, String)> {
    let (kind, options) = kind_and_options(node.as_node(), context, &[selector], registry, diag)?;
    let built = (kind.build)(&options, diag)?;
    Some((built, format!("{} {}", kind.name, options.effective())))
}

/// A stage as the file gives it: kind, options, `when`, and the stage built from them.
type Built = (&'static str, Options, Option<When>, Box<dyn Stage>);

fn stage_plan(node: &Node, index: usize, diag: &mut Diagnostics) -> Option<Built> {
    let context = format!("[[stage]] {index}");
    let when = match &node.value {
        Value::Table(entries) => find(entries, "when"),
        _ => None,
    }
    .map(|entry| When::parse(&entry.node, &context, diag));
    let (kind, options) = kind_and_options(node, context, &["use", "when"], STAGES, diag)?;
    let stage = (kind.build)(&options, diag)?;
    Some((kind.name, options, when.flatten(), stage))
}

/// Item text leaves the machine only redacted: a stage that sends fields to an endpoint needs
/// a redact stage before it covering each of them for every item (no `when`), or
/// `allow_unredacted = "reason"`.
fn check_egress(stages: &[Built], diag: &mut Diagnostics) {
    let mut redacted: Vec<String> = Vec::new();
    for (_, options, when, stage) in stages {
        if let Some(egress) = stage.egress() {
            let bare: Vec<&str> = egress
                .fields
                .iter()
                .filter(|f| !redacted.contains(f))
                .map(String::as_str)
                .collect();
            if !bare.is_empty() && egress.allow_unredacted.is_none() {
                diag.error(
                    &options.span_of("endpoint"),
                    format!(
                        "{} sends `{}` to {}, off this machine, and no redact stage before it covers `{}`; add a redact stage with `fields = [\"{}\"]` before it, or give the reason it may leave unredacted: `allow_unredacted = \"...\"`",
                        options.context,
                        egress.fields.join("`, `"),
                        egress.endpoint,
                        bare.join("`, `"),
                        bare.join("\", \""),
                    ),
                );
            }
        }
        // A redact stage with a `when` leaves the items it does not take as they were.
        if when.is_none() {
            redacted.extend(stage.redacts());
        }
    }
}

fn label_stages(stages: Vec<Built>) -> Vec<StagePlan> {
    let mut seen: Vec<&str> = Vec::new();
    stages
        .into_iter()
        .map(|(kind, options, when, stage)| {
            seen.push(kind);
            let n = seen.iter().filter(|k| **k == kind).count();
            StagePlan {
                label: if n == 1 {
                    kind.to_string()
                } else {
                    format!("{kind}#{n}")
                },
                batch_size: options.usize("batch_size"),
                max_wait: options.duration("max_wait"),
                workers: options.usize("workers"),
                timeout: options.opt_duration("timeout"),
                when,
                stage: Arc::from(stage),
            }
        })
        .collect()
}

/// The component a table names by `keys[0]` (`use`, `kind`), and its options checked against the
/// kind's schema; every key in `keys` is the caller's.
fn kind_and_options<T: ?Sized>(
    node: &Node,
    context: String,
    keys: &[&str],
    registry: &'static [ComponentKind<T>],
    diag: &mut Diagnostics,
) -> Option<(&'static ComponentKind<T>, Options)> {
    let selector = keys[0];
    let Value::Table(entries) = &node.value else {
        diag.error(&node.span, format!("{context} must be a table"));
        return None;
    };
    let names: Vec<&str> = registry.iter().map(|k| k.name).collect();
    let Some(entry) = find(entries, selector) else {
        diag.error(
            &node.span,
            format!(
                "missing key `{selector}` in {context}; add `{selector} = \"...\"` with one of: {}",
                names.join(", ")
            ),
        );
        return None;
    };
    let Value::Str(name) = &entry.node.value else {
        diag.error(
            &entry.node.span,
            format!(
                "`{selector}` in {context} must be a string naming one of: {}",
                names.join(", ")
            ),
        );
        return None;
    };
    let Some(kind) = registry.iter().find(|k| k.name == name) else {
        diag.error(
            &entry.node.span,
            format!(
                "unknown {selector} \"{name}\" in {context}; {}",
                crate::options::suggest(name, &names)
            ),
        );
        return None;
    };
    let context = format!("{context} ({name})");
    let before = diag.problems.len();
    let options = Options::validate(
        context,
        node.span.clone(),
        entries,
        kind.options,
        keys,
        diag,
    );
    // Building from options that failed validation would only repeat those problems.
    (diag.problems.len() == before).then_some((kind, options))
}

/// Lets `component` take either a table node or the entry holding it (`[input]`).
trait AsNode {
    fn as_node(&self) -> &Node;
}

impl AsNode for &Node {
    fn as_node(&self) -> &Node {
        self
    }
}

impl AsNode for &Entry {
    fn as_node(&self) -> &Node {
        &self.node
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Every default in every registry is valid TOML of the option's own type.
    #[test]
    fn registry_defaults_are_valid() {
        let specs: Vec<(&str, &'static [OptionSpec])> = STAGES
            .iter()
            .map(|k| (k.name, k.options))
            .chain(SOURCES.iter().map(|k| (k.name, k.options)))
            .chain(SINKS.iter().map(|k| (k.name, k.options)))
            .collect();
        for (kind, spec) in specs {
            let entries: Vec<Entry> = spec
                .iter()
                .filter_map(|o| match o.default {
                    Default::Value(literal) => Some(Entry {
                        key: o.name.to_string(),
                        key_span: 0..0,
                        node: tree::parse_value(literal)
                            .unwrap_or_else(|| panic!("{kind}.{}: default is not TOML", o.name)),
                    }),
                    _ => None,
                })
                .collect();
            let mut diag = Diagnostics::new("defaults", "");
            Options::validate(kind.into(), 0..0, &entries, spec, &[], &mut diag);
            let required = spec
                .iter()
                .filter(|o| matches!(o.default, Default::Required))
                .count();
            assert_eq!(diag.problems.len(), required, "{kind}: {:?}", diag.problems);
        }
    }
}
