//! An owned TOML tree that remembers where every key and value sits in its file.
//!
//! `toml`'s spanned parser gives byte ranges; this module turns them into a small owned tree
//! (`Node`) so validation can point at `file:line:column` for any key or value long after the
//! source text is gone. It knows nothing about what a pipeline means.

use std::ops::Range;

use toml::de::{DeTable, DeValue};

/// A value with the byte range it came from.
#[derive(Clone, Debug)]
pub struct Node {
    pub span: Range<usize>,
    pub value: Value,
}

/// One `key = value` entry of a table, with the span of the key itself.
#[derive(Clone, Debug)]
pub struct Entry {
    pub key: String,
    pub key_span: Range<usize>,
    pub node: Node,
}

#[derive(Clone, Debug)]
pub enum Value {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Datetime,
    Array(Vec<Node>),
    Table(Vec<Entry>),
}

impl Value {
    /// The TOML type name as a user would say it: "a string", "an integer", ...
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "a string",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Bool(_) => "a boolean",
            Value::Datetime => "a date-time",
            Value::Array(_) => "an array",
            Value::Table(_) => "a table",
        }
    }
}

impl Node {
    /// The value as compact text that ignores formatting and comments: two spellings of the
    /// same value give the same text (JSON-like, tables in key order as written).
    pub fn canonical(&self) -> String {
        match &self.value {
            Value::Str(s) => serde_json::Value::String(s.clone()).to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => format!("{f:?}"),
            Value::Bool(b) => b.to_string(),
            Value::Datetime => "datetime".into(),
            Value::Array(items) => {
                let items: Vec<String> = items.iter().map(Node::canonical).collect();
                format!("[{}]", items.join(","))
            }
            Value::Table(entries) => {
                let entries: Vec<String> = entries
                    .iter()
                    .map(|e| format!("{:?}:{}", e.key, e.node.canonical()))
                    .collect();
                format!("{{{}}}", entries.join(","))
            }
        }
    }
}

/// A TOML syntax error with its byte range.
pub struct SyntaxError {
    pub message: String,
    pub span: Range<usize>,
}

/// Parses a whole TOML document. On a syntax error returns every error the parser recovered from.
pub fn parse_document(text: &str) -> Result<Node, Vec<SyntaxError>> {
    let (table, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        return Err(errors
            .into_iter()
            .map(|e| SyntaxError {
                message: e.message().trim().to_string(),
                span: e.span().unwrap_or(0..0),
            })
            .collect());
    }
    let span = table.span();
    Ok(Node {
        span,
        value: Value::Table(convert_table(table.get_ref())),
    })
}

/// Parses one TOML value written on its own, e.g. an option's default `"[\"text\"]"`.
pub fn parse_value(text: &str) -> Option<Node> {
    let value = DeValue::parse(text).ok()?;
    Some(convert(value.span(), value.get_ref()))
}

fn convert_table(table: &DeTable<'_>) -> Vec<Entry> {
    table
        .iter()
        .map(|(k, v)| Entry {
            key: k.get_ref().to_string(),
            key_span: k.span(),
            node: convert(v.span(), v.get_ref()),
        })
        .collect()
}

fn convert(span: Range<usize>, value: &DeValue<'_>) -> Node {
    let value = match value {
        DeValue::String(s) => Value::Str(s.to_string()),
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => Value::Int(n),
            // Out of i64 range: saturate, so validation reports it as out of range.
            Err(_) if i.as_str().starts_with('-') => Value::Int(i64::MIN),
            Err(_) => Value::Int(i64::MAX),
        },
        DeValue::Float(f) => Value::Float(f.as_str().replace('_', "").parse().unwrap_or(f64::NAN)),
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Datetime(_) => Value::Datetime,
        DeValue::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| convert(v.span(), v.get_ref()))
                .collect(),
        ),
        DeValue::Table(t) => Value::Table(convert_table(t)),
    };
    Node { span, value }
}

/// Maps byte offsets to 1-based line and column numbers.
pub struct LineIndex {
    line_starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(text: &str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { line_starts }
    }

    /// 1-based (line, column) of a byte offset.
    pub fn locate(&self, text: &str, offset: usize) -> (usize, usize) {
        let line = self.line_starts.partition_point(|&s| s <= offset).max(1);
        let start = self.line_starts[line - 1];
        let end = offset.min(text.len());
        let column = text.get(start..end).map_or(1, |s| s.chars().count() + 1);
        (line, column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Keys keep their file order and their spans point at the key text.
    #[test]
    fn keeps_order_and_spans() {
        let text = "b = 1\na = \"x\"\n";
        let Value::Table(entries) = parse_document(text).ok().unwrap().value else {
            panic!("document is a table")
        };
        assert_eq!(entries[0].key, "b");
        assert_eq!(&text[entries[1].key_span.clone()], "a");
        let index = LineIndex::new(text);
        assert_eq!(index.locate(text, entries[1].key_span.start), (2, 1));
    }

    // A syntax error is reported with a span, not a panic.
    #[test]
    fn syntax_error_has_span() {
        let errors = parse_document("a = \n[x").err().unwrap();
        assert!(!errors.is_empty());
    }
}
