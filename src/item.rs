//! The unit of work that flows through a pipeline: one file or one JSONL line.
//!
//! An item carries a stable id, where it came from, the sha256 of its input bytes and a JSON
//! object of fields that stages read and write. A failed item keeps flowing (stages skip it) so
//! the writer sees every item in input order and can route failures to the dead letters.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

#[derive(Debug)]
pub struct Item {
    /// Position in input order, set by the runtime's intake; the writer reorders by it.
    pub seq: u64,
    /// Stable id: a JSONL record's own `id`, else its origin; a file's path below its input root.
    pub id: String,
    /// Where it came from, for messages: "docs/a.txt", "tickets.jsonl:12", "stdin:3".
    pub origin: String,
    /// sha256 of the input bytes (the file, or the JSONL line).
    pub input_sha256: String,
    /// For files: the path below the input folder, so per-item outputs can mirror the tree.
    pub rel_path: Option<std::path::PathBuf>,
    pub fields: Map<String, Value>,
    pub failure: Option<Failure>,
    /// Seconds each stage's call took for the batch holding this item, for the ledger.
    pub timings: Vec<(String, f64)>,
    /// Compute charged to this item across its stages (its share of each batch's).
    pub usage: Usage,
    /// Bytes this item holds of the runtime's byte budget (`budget.rs`), given back when it
    /// is written.
    pub weight: u64,
}

/// CPU and GPU seconds of work, as charged by the run's account (`component::threads`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    pub cpu_s: f64,
    pub gpu_s: f64,
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, other: Usage) {
        self.cpu_s += other.cpu_s;
        self.gpu_s += other.gpu_s;
    }
}

/// Why an item failed, and in which stage ("input" for problems reading it).
#[derive(Clone, Debug)]
pub struct Failure {
    pub stage: String,
    pub reason: String,
}

impl Item {
    pub fn new(id: String, origin: String, input: &[u8], fields: Map<String, Value>) -> Item {
        Item::hashed(id, origin, sha256_hex(input), fields)
    }

    /// An item whose input was hashed elsewhere (a large file, streamed through sha256).
    pub fn hashed(
        id: String,
        origin: String,
        input_sha256: String,
        fields: Map<String, Value>,
    ) -> Item {
        Item {
            seq: 0,
            id,
            origin,
            input_sha256,
            rel_path: None,
            fields,
            failure: None,
            timings: Vec::new(),
            usage: Usage::default(),
            weight: 0,
        }
    }

    /// An item that could not even be read; it still flows so the run reports it in order.
    pub fn failed(id: String, origin: String, input: &[u8], reason: String) -> Item {
        let mut item = Item::new(id, origin, input, Map::new());
        item.fail("input", reason);
        item
    }

    pub fn fail(&mut self, stage: &str, reason: String) {
        self.failure = Some(Failure {
            stage: stage.to_string(),
            reason,
        });
    }

    /// The record written to JSONL outputs: `id` first, then the fields (all, or those in
    /// `only`), then provenance under `_lai`. Serialized straight from the item, no copy.
    pub fn record<'a>(&'a self, only: &'a [String], run: &'a Provenance) -> Record<'a> {
        Record {
            item: self,
            only,
            run,
        }
    }

    /// The dead-letter record: identity and error only, never the item's content nor a hash
    /// of it (see `RecordProvenance`).
    pub fn error_record(&self) -> Value {
        let failure = self.failure.as_ref();
        json!({
            "id": self.id,
            "origin": self.origin,
            "stage": failure.map(|f| f.stage.as_str()),
            "error": failure.map(|f| f.reason.as_str()),
        })
    }

    /// About how many bytes the item holds: its text fields and the rest of its JSON, roughly.
    pub fn size(&self) -> u64 {
        fn size(value: &Value) -> u64 {
            match value {
                Value::String(s) => s.len() as u64,
                Value::Array(a) => a.iter().map(size).sum::<u64>() + 8,
                Value::Object(o) => o.iter().map(|(k, v)| k.len() as u64 + size(v)).sum(),
                _ => 8,
            }
        }
        let fields: u64 = self
            .fields
            .iter()
            .map(|(k, v)| k.len() as u64 + size(v))
            .sum();
        fields + (self.id.len() + self.origin.len()) as u64 + 128
    }

    /// The string in `field`, or what is wrong ("no `text` text field: it is missing"); the
    /// caller adds what to do about it.
    pub fn text(&self, field: &str) -> Result<&str, String> {
        match self.fields.get(field) {
            Some(Value::String(text)) => Ok(text),
            Some(other) => Err(format!(
                "no `{field}` text field: it is {}",
                json_type(other)
            )),
            None => Err(format!("no `{field}` text field: it is missing")),
        }
    }

    /// A field rendered for CSV and text outputs: strings as they are, other values as JSON.
    pub fn field_text(&self, name: &str) -> Option<String> {
        let value = if name == "id" && !self.fields.contains_key("id") {
            return Some(self.id.clone());
        } else {
            self.fields.get(name)?
        };
        Some(match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }
}

/// "a number", "an array", ...: a JSON value's type for messages.
pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A borrowed view of an item as an output record; see `Item::record`.
pub struct Record<'a> {
    item: &'a Item,
    only: &'a [String],
    run: &'a Provenance,
}

/// How a run's records were made: the same for every record of a run, and for every run of
/// the same pipeline and models, so a resumed run writes the very bytes an uninterrupted one
/// would. Which run made a record is in the ledger.
#[derive(Debug, serde::Serialize)]
pub struct Provenance {
    pub lai_version: &'static str,
    pub pipeline_sha256: String,
    /// Model name -> sha256 of each model file the pipeline uses.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub models: std::collections::BTreeMap<String, String>,
}

impl Provenance {
    /// This lai, the pipeline file's sha256, and each model's name with its file's sha256.
    pub fn new(pipeline_sha256: &str, models: impl IntoIterator<Item = (String, String)>) -> Self {
        Provenance {
            lai_version: env!("CARGO_PKG_VERSION"),
            pipeline_sha256: pipeline_sha256.to_string(),
            models: models.into_iter().collect(),
        }
    }
}

impl Serialize for Record<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let item = self.item;
        let mut map = serializer.serialize_map(None)?;
        if !item.fields.contains_key("id") {
            map.serialize_entry("id", &item.id)?;
        }
        for (key, value) in &item.fields {
            // A record lai wrote before (an output read back in) has its `_lai`: this run's
            // replaces it, so no record holds the key twice.
            if key == "_lai" {
                continue;
            }
            if key == "id" || self.only.is_empty() || self.only.iter().any(|f| f == key) {
                map.serialize_entry(key, value)?;
            }
        }
        map.serialize_entry(
            "_lai",
            &RecordProvenance {
                origin: &item.origin,
                run: self.run,
            },
        )?;
        map.end()
    }
}

/// A record's `_lai`: where it came from and how it was made. Deliberately no hash of the
/// input: published beside a redacted text, a plain hash of the original lets anyone confirm
/// guesses of what was removed. The input's sha256 stays in the ledger, the site's own store.
#[derive(serde::Serialize)]
struct RecordProvenance<'a> {
    origin: &'a str,
    #[serde(flatten)]
    run: &'a Provenance,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Text from a file name or an id made safe to print on a terminal: control characters (a
/// newline that forges a second message, an escape sequence that rewrites the screen) and
/// bidirectional overrides are shown escaped (`\n`, `\x1b`, `\u{202e}`); everything else,
/// other scripts included, is shown as it is.
pub fn printable(text: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| {
        c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.contains(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => shown.push_str("\\n"),
            '\r' => shown.push_str("\\r"),
            '\t' => shown.push_str("\\t"),
            c if unsafe_char(c) && (c as u32) < 0x80 => {
                shown.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if unsafe_char(c) => shown.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => shown.push(c),
        }
    }
    Cow::Owned(shown)
}

/// Seconds since the epoch as an RFC 3339 UTC timestamp.
pub fn timestamp(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // The error record names the failure but never carries the item's fields.
    #[test]
    fn error_record_has_no_content() {
        let mut fields = Map::new();
        fields.insert("text".into(), json!("secret@example.com"));
        let mut item = Item::new("a".into(), "a.txt".into(), b"x", fields);
        item.fail("redact", "boom".into());
        let text = item.error_record().to_string();
        assert!(text.contains("boom") && !text.contains("secret"));
        assert!(!text.contains(&sha256_hex(b"x")), "no hash of the input");
    }

    // A record's id comes first and provenance is attached.
    #[test]
    fn record_shape() {
        let mut fields = Map::new();
        fields.insert("text".into(), json!("hi"));
        fields.insert("extra".into(), json!(1));
        let item = Item::new("doc-1".into(), "stdin:1".into(), b"{}", fields);
        let run = Provenance {
            lai_version: "0.1.0",
            pipeline_sha256: "p".into(),
            models: [("m".to_string(), "h".to_string())].into(),
        };
        let record = serde_json::to_value(item.record(&[], &run)).unwrap();
        assert_eq!(
            record.to_string(),
            r#"{"id":"doc-1","text":"hi","extra":1,"_lai":{"origin":"stdin:1","lai_version":"0.1.0","pipeline_sha256":"p","models":{"m":"h"}}}"#
        );
        // A record read back in: its old `_lai` gives way to this run's.
        let mut old = item.fields.clone();
        old.insert("_lai".into(), json!({"origin": "old"}));
        let again = Item::new("doc-1".into(), "stdin:1".into(), b"{}", old);
        let text = serde_json::to_string(&again.record(&[], &run)).unwrap();
        assert_eq!(text.matches("_lai").count(), 1, "{text}");
        assert!(text.contains("stdin:1") && !text.contains("old"), "{text}");
        let only = ["text".to_string()];
        let record = serde_json::to_value(item.record(&only, &run)).unwrap();
        assert!(record.get("extra").is_none());
        assert_eq!(record["id"], "doc-1");
        assert_eq!(record["_lai"]["origin"], "stdin:1");
    }

    // Control characters and direction overrides are escaped; plain and non-Latin text is not.
    #[test]
    fn printable_escapes_what_a_terminal_would_obey() {
        assert_eq!(printable("docs/ünï.txt"), "docs/ünï.txt");
        assert_eq!(printable("a\nerror: b"), "a\\nerror: b");
        assert_eq!(printable("x\u{1b}[2Jy\u{7f}"), "x\\x1b[2Jy\\x7f");
        assert_eq!(printable("\u{202e}txt.exe"), "\\u{202e}txt.exe");
    }

    // Known instants format as RFC 3339 UTC.
    #[test]
    fn timestamps() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_795_000_000);
        assert_eq!(timestamp(t), "2026-11-18T11:06:40Z");
    }
}
