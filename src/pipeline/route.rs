//! Routing: a stage's `when` admits only the items that meet its condition; the others go on
//! past the stage unchanged (counted as passed by). Two stages with opposite conditions send each
//! item to one model or the other: the long or doubtful items to the big server, the rest to
//! the local model.
//!
//!     when = { field = "text", longer_than = 4000 }        # characters
//!     when = { field = "label", equals = ["legal", "medical"] }
//!     when = { field = "score", below = 0.6 }
//!     when = { field = "subject", matches = "(?i)urgent" }
//!     when = { field = "summary", missing = true }          # no stage wrote it yet
//!
//! A field may be a dotted path into objects (`classify.score`).

use regex::Regex;
use serde_json::Value;

use crate::item::Item;
use crate::options::Diagnostics;
use crate::options::tree::{Node, Value as Toml};

/// A stage's condition on an item.
#[derive(Debug)]
pub struct When {
    field: String,
    test: Test,
}

#[derive(Debug)]
enum Test {
    /// The field's text is one of these.
    Equals(Vec<String>),
    /// The field's text matches.
    Matches(Regex),
    /// The field's number is above / below this.
    Above(f64),
    Below(f64),
    /// The field's text has more / fewer characters than this (a missing field has none).
    LongerThan(usize),
    ShorterThan(usize),
    /// The field is absent or null (`true`), or present (`false`).
    Missing(bool),
}

const TESTS: &[&str] = &[
    "equals",
    "matches",
    "above",
    "below",
    "longer_than",
    "shorter_than",
    "missing",
];

impl When {
    /// Reads a `when` table, reporting every problem at its place.
    pub fn parse(node: &Node, context: &str, diag: &mut Diagnostics) -> Option<When> {
        let usage = "write it as `when = { field = \"NAME\", TEST = VALUE }` with one TEST of equals, matches, above, below, longer_than, shorter_than, missing";
        let Toml::Table(entries) = &node.value else {
            diag.error(
                &node.span,
                format!("`when` in {context} must be a table; {usage}"),
            );
            return None;
        };
        let mut field = None;
        let mut tests = Vec::new();
        for entry in entries {
            let key = entry.key.as_str();
            let bad = |diag: &mut Diagnostics, what: &str| {
                diag.error(
                    &entry.node.span,
                    format!("`when.{key}` in {context} must be {what}"),
                );
            };
            let value = &entry.node.value;
            let test = match (key, value) {
                ("field", Toml::Str(name)) if !name.is_empty() => {
                    field = Some(name.clone());
                    continue;
                }
                ("field", _) => {
                    bad(diag, "a field name");
                    continue;
                }
                ("equals", Toml::Str(s)) => Test::Equals(vec![s.clone()]),
                ("equals", Toml::Array(items)) => {
                    let texts: Option<Vec<String>> = items
                        .iter()
                        .map(|n| match &n.value {
                            Toml::Str(s) => Some(s.clone()),
                            _ => None,
                        })
                        .collect();
                    match texts {
                        Some(texts) if !texts.is_empty() => Test::Equals(texts),
                        _ => {
                            bad(diag, "a string or a list of strings");
                            continue;
                        }
                    }
                }
                ("matches", Toml::Str(pattern)) => match Regex::new(pattern) {
                    Ok(re) => Test::Matches(re),
                    Err(e) => {
                        bad(diag, &format!("a regular expression ({e})"));
                        continue;
                    }
                },
                ("above" | "below", Toml::Int(_) | Toml::Float(_)) => {
                    let n = match value {
                        Toml::Int(i) => *i as f64,
                        Toml::Float(f) => *f,
                        _ => unreachable!("matched above"),
                    };
                    if key == "above" {
                        Test::Above(n)
                    } else {
                        Test::Below(n)
                    }
                }
                ("longer_than" | "shorter_than", Toml::Int(n)) if *n >= 0 => {
                    let n = *n as usize;
                    if key == "longer_than" {
                        Test::LongerThan(n)
                    } else {
                        Test::ShorterThan(n)
                    }
                }
                ("missing", Toml::Bool(b)) => Test::Missing(*b),
                ("equals" | "matches", _) => {
                    bad(diag, "a string");
                    continue;
                }
                ("above" | "below", _) => {
                    bad(diag, "a number");
                    continue;
                }
                ("longer_than" | "shorter_than", _) => {
                    bad(diag, "a count of characters (0 or more)");
                    continue;
                }
                ("missing", _) => {
                    bad(diag, "true or false");
                    continue;
                }
                _ => {
                    diag.error(
                        &entry.key_span,
                        format!(
                            "unknown key `when.{key}` in {context}; {}",
                            crate::options::suggest(key, &[&["field"], TESTS].concat())
                        ),
                    );
                    continue;
                }
            };
            tests.push(test);
        }
        let Some(field) = field else {
            diag.error(
                &node.span,
                format!("`when` in {context} names no `field`; {usage}"),
            );
            return None;
        };
        if tests.len() != 1 {
            diag.error(
                &node.span,
                format!("`when` in {context} has {} tests; {usage}", tests.len()),
            );
            return None;
        }
        let test = tests
            .pop()
            .expect("one test, checked above. This is a bug.");
        Some(When { field, test })
    }

    /// Whether the stage takes `item`.
    pub fn admits(&self, item: &Item) -> bool {
        let mut value = None;
        for (i, part) in self.field.split('.').enumerate() {
            value = if i == 0 {
                item.fields.get(part)
            } else {
                value.and_then(|v: &Value| v.get(part))
            };
        }
        let value = value.filter(|v| !v.is_null());
        let text = || match value {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Bool(b)) => Some(b.to_string()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let chars = || {
            value
                .and_then(Value::as_str)
                .map_or(0, |s| s.chars().count())
        };
        match &self.test {
            Test::Equals(texts) => text().is_some_and(|t| texts.contains(&t)),
            Test::Matches(re) => value
                .and_then(Value::as_str)
                .is_some_and(|s| re.is_match(s)),
            Test::Above(n) => value.and_then(Value::as_f64).is_some_and(|v| v > *n),
            Test::Below(n) => value.and_then(Value::as_f64).is_some_and(|v| v < *n),
            Test::LongerThan(n) => chars() > *n,
            Test::ShorterThan(n) => chars() < *n,
            Test::Missing(missing) => value.is_none() == *missing,
        }
    }

    /// The condition as canonical text, for the pipeline's config (and so its resume key).
    pub fn describe(&self) -> String {
        let test = match &self.test {
            Test::Equals(texts) => format!("equals {texts:?}"),
            Test::Matches(re) => format!("matches {:?}", re.as_str()),
            Test::Above(n) => format!("above {n}"),
            Test::Below(n) => format!("below {n}"),
            Test::LongerThan(n) => format!("longer_than {n}"),
            Test::ShorterThan(n) => format!("shorter_than {n}"),
            Test::Missing(b) => format!("missing {b}"),
        };
        format!("{} {test}", self.field)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn when(toml: &str) -> Result<When, ()> {
        let text = format!("when = {toml}");
        let Ok(doc) = crate::options::tree::parse_document(&text) else {
            return Err(());
        };
        let Toml::Table(entries) = &doc.value else {
            unreachable!("a document is a table")
        };
        let mut diag = Diagnostics::new("p.toml", &text);
        let when = When::parse(&entries[0].node, "[[stage]] 1", &mut diag);
        match when {
            Some(w) if diag.is_empty() => Ok(w),
            _ => Err(()),
        }
    }

    fn item(fields: Value) -> Item {
        let fields = fields.as_object().unwrap().clone();
        Item::new("i".into(), "o".into(), b"", fields)
    }

    // Each test admits what it says and nothing else; a missing field meets only `missing`
    // and `shorter_than`.
    #[test]
    fn conditions_admit_what_they_say() {
        let it = item(json!({"label": "legal", "score": 0.4, "text": "abcdef", "c": {"s": 2}}));
        let empty = item(json!({"summary": null}));
        let cases = [
            (
                "{ field = \"label\", equals = [\"legal\", \"medical\"] }",
                true,
                false,
            ),
            ("{ field = \"label\", equals = \"tax\" }", false, false),
            ("{ field = \"label\", matches = \"^le\" }", true, false),
            ("{ field = \"score\", below = 0.6 }", true, false),
            ("{ field = \"score\", above = 0.6 }", false, false),
            ("{ field = \"c.s\", above = 1 }", true, false),
            ("{ field = \"text\", longer_than = 5 }", true, false),
            ("{ field = \"text\", shorter_than = 5 }", false, true),
            ("{ field = \"summary\", missing = true }", true, true),
            ("{ field = \"label\", missing = false }", true, false),
        ];
        for (toml, on_it, on_empty) in cases {
            let w = when(toml).unwrap();
            assert_eq!(
                (w.admits(&it), w.admits(&empty)),
                (on_it, on_empty),
                "{toml}"
            );
        }
    }

    // A `when` without a field, with two tests, an unknown test or a bad value is refused.
    #[test]
    fn bad_conditions_are_refused() {
        for toml in [
            "{ equals = \"x\" }",
            "{ field = \"a\", equals = \"x\", below = 1 }",
            "{ field = \"a\", bigger = 1 }",
            "{ field = \"a\", matches = \"(\" }",
            "{ field = \"a\", longer_than = -1 }",
            "\"text\"",
        ] {
            assert!(when(toml).is_err(), "{toml}");
        }
    }
}
