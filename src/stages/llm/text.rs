//! Text work around the model: prompt templates, splitting long inputs by tokens, and the
//! cleanup guard: stripping what a small model wraps around its answer, and word-level
//! similarity.

use serde_json::{Map, Value};

use crate::engines::llama::Prompt;

/// A prompt template: literal text with `{{name}}` variables.
#[derive(Clone, Debug)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Clone, Debug)]
enum Part {
    Text(String),
    Var(String),
}

impl Template {
    /// Parses `{{name}}` variables; an unclosed `{{` is an error.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            parts.push(Part::Text(rest[..open].to_string()));
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or_else(|| {
                format!(
                    "`{{{{` at byte {} is never closed with `}}}}`",
                    text.len() - rest.len() + open
                )
            })?;
            let name = after[..close].trim();
            if name.is_empty() {
                return Err("empty variable `{{}}`".into());
            }
            parts.push(Part::Var(name.to_string()));
            rest = &after[close + 2..];
        }
        parts.push(Part::Text(rest.to_string()));
        Ok(Template { parts })
    }

    /// The variables it names, in order (repeats included).
    pub fn vars(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v.as_str()),
            Part::Text(_) => None,
        })
    }

    pub fn uses(&self, name: &str) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Var(v) if v == name))
    }

    /// Fills the variables: first from `given` (the input piece, built-ins), then from the
    /// item's fields (strings as they are, other values as JSON). A missing field is an error.
    /// The template's own text is control text (it may write the model's raw format); every
    /// value is data.
    pub fn render(
        &self,
        given: &[(&str, &str)],
        fields: &Map<String, Value>,
    ) -> Result<Prompt, String> {
        let mut out = Prompt::default();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_control(t),
                Part::Var(name) => {
                    if let Some((_, value)) = given.iter().find(|(n, _)| n == name) {
                        out.push_data(value);
                    } else {
                        match fields.get(name) {
                            Some(Value::String(s)) => out.push_data(s),
                            Some(Value::Null) | None => {
                                return Err(format!(
                                    "the prompt uses `{{{{{name}}}}}` but the item has no `{name}` field; give the input that field or take it out of the prompt"
                                ));
                            }
                            Some(other) => out.push_data(&other.to_string()),
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

/// One piece of a split input, and the whitespace that followed it in the source (so joined
/// outputs keep paragraph breaks).
#[derive(Clone, Debug, PartialEq)]
pub struct Piece {
    pub text: String,
    pub gap: String,
}

/// Splits `text` into pieces of at most `limit` tokens (as `count` measures them), at sentence
/// ends where possible, else between words. With `overlap` > 0 each piece after the first
/// starts with up to that many tokens of whole sentences from the end of the one before; with
/// 0 the pieces are a partition of the text (nothing repeated, nothing lost).
pub fn split(
    text: &str,
    limit: usize,
    overlap: usize,
    count: impl Fn(&str) -> usize,
) -> Vec<Piece> {
    let limit = limit.max(1);
    let mut units: Vec<&str> = Vec::new();
    for sentence in sentences(text) {
        if count(sentence) <= limit {
            units.push(sentence);
        } else {
            for word in sentence.split_inclusive(char::is_whitespace) {
                if count(word) <= limit {
                    units.push(word);
                } else {
                    units.extend(char_chunks(word, limit));
                }
            }
        }
    }
    let counts: Vec<usize> = units.iter().map(|u| count(u)).collect();
    let mut pieces = Vec::new();
    let mut start = 0;
    while start < units.len() {
        let mut end = start;
        let mut total = 0;
        while end < units.len() && (end == start || total + counts[end] <= limit) {
            total += counts[end];
            end += 1;
        }
        let joined: String = units[start..end].concat();
        let trimmed = joined.trim_end();
        pieces.push(Piece {
            text: trimmed.trim_start().to_string(),
            gap: joined[trimmed.len()..].to_string(),
        });
        if end == units.len() {
            break;
        }
        let mut next = end;
        let mut carried = 0;
        while next > start + 1 && carried + counts[next - 1] <= overlap {
            next -= 1;
            carried += counts[next];
        }
        start = next;
    }
    pieces.retain(|p| !p.text.is_empty());
    pieces
}

/// Sentences with their trailing whitespace: a sentence ends after `.`, `!` or `?` followed by
/// whitespace, and at every line break.
fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let ends = c == '\n'
            || (matches!(c, '.' | '!' | '?')
                && chars.peek().is_some_and(|(_, n)| n.is_whitespace()));
        if ends {
            // Take the whitespace that follows too.
            let mut end = i + c.len_utf8();
            while let Some(&(j, n)) = chars.peek() {
                if !n.is_whitespace() {
                    break;
                }
                end = j + n.len_utf8();
                chars.next();
            }
            out.push(&text[start..end]);
            start = end;
        }
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

/// A "word" longer than the limit (a URL, a run without spaces) in pieces of `limit` chars,
/// which is at most `limit` tokens.
fn char_chunks(word: &str, limit: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = word;
    while !rest.is_empty() {
        let end = rest
            .char_indices()
            .nth(limit)
            .map_or(rest.len(), |(i, _)| i);
        out.push(&rest[..end]);
        rest = &rest[end..];
    }
    out
}

/// Hesitations a cleanup is expected to remove; the guard ignores them.
const FILLERS: &[&str] = &["um", "uh", "umm", "uhm", "erm", "er", "ah", "hmm", "mm"];

/// Lower-cased words without punctuation or fillers.
pub fn words(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric())
                .flat_map(char::to_lowercase)
                .collect::<String>()
        })
        .filter(|w| !w.is_empty() && !FILLERS.contains(&w.as_str()))
        .collect()
}

/// How alike two word sequences are: 2 × longest common subsequence ÷ total words (1 for
/// equal, 0 for nothing in common, in order).
pub fn similarity(a: &[String], b: &[String]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let mut row = vec![0usize; b.len() + 1];
    for x in a {
        let mut diagonal = 0;
        for (j, y) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if x == y {
                diagonal + 1
            } else {
                above.max(row[j])
            };
            diagonal = above;
        }
    }
    2.0 * row[b.len()] as f64 / (a.len() + b.len()) as f64
}

/// Words that make a short phrase ending in ':' at the start of an answer a label the model
/// invented ("Corrected text:", "Here is the cleaned transcript:"), not the text's own words.
const LABEL_WORDS: &[&str] = &[
    "transcription", "transcript", "text", "corrected", "cleaned", "cleanup", "output", "result",
    "answer", "response", "version", "here", "heres", "below", "following", "revised", "edited",
];

/// Openers of a chatty answer ("Sure! ...", "Certainly, ...").
const OPENERS: &[&str] = &["sure", "certainly", "of course", "okay", "ok", "absolutely"];

/// Quote pairs a model wraps a whole answer in.
const QUOTES: &[(char, char)] = &[('"', '"'), ('\'', '\''), ('“', '”'), ('‘', '’'), ('«', '»')];

/// The answer without what the model put around it and the source does not have: a leading
/// chatty opener, an invented label ("Transcription:"), a code fence, enclosing quotes; repeated
/// until none is left. The guard's similarity check then judges what remains.
pub fn unwrap_answer<'a>(answer: &'a str, source: &str) -> &'a str {
    let source = source.trim();
    let mut text = answer.trim();
    loop {
        let before = text;
        if let Some(inner) = text.strip_prefix("```").and_then(|t| t.strip_suffix("```")) {
            // The first line may name a language ("```text").
            text = match inner.split_once('\n') {
                Some((lang, rest)) if !lang.contains(' ') => rest,
                _ => inner,
            }
            .trim();
        }
        if let Some(rest) = strip_opener(text, source) {
            text = rest;
        }
        if let Some(rest) = strip_label(text, source) {
            text = rest;
        }
        for (open, close) in QUOTES {
            let wrapped = text.len() > 2 && text.starts_with(*open) && text.ends_with(*close);
            if wrapped && !(source.starts_with(*open) && source.ends_with(*close)) {
                text = text[open.len_utf8()..text.len() - close.len_utf8()].trim();
                break;
            }
        }
        if text == before {
            return text;
        }
    }
}

/// "Sure! rest", "Certainly, rest": the rest, when the source does not start the same way.
fn strip_opener<'a>(text: &'a str, source: &str) -> Option<&'a str> {
    let lower = text.to_lowercase();
    let opener = OPENERS.iter().find(|o| lower.starts_with(*o))?;
    if source.to_lowercase().starts_with(opener) {
        return None;
    }
    let rest = &text[opener.len()..];
    let rest = rest.strip_prefix(['!', ',', '.'])?;
    Some(rest.trim_start())
}

/// "Label words: rest" at the start, a short phrase with a label word that the source does not
/// start with: the rest.
fn strip_label<'a>(text: &'a str, source: &str) -> Option<&'a str> {
    let (label, rest) = text.split_once(':')?;
    let label_words = words(label);
    let short = !label_words.is_empty() && label_words.len() <= 8 && !label.contains('\n');
    let labelled = label_words.iter().any(|w| LABEL_WORDS.contains(&w.as_str()));
    let own = source
        .to_lowercase()
        .starts_with(&label.trim().to_lowercase());
    (short && labelled && !own && !label.chars().any(|c| c.is_ascii_digit()))
        .then(|| rest.trim_start())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words_count(s: &str) -> usize {
        s.split_whitespace().count()
    }

    // Variables come from the given values first, then the item, as data; a missing field names
    // itself.
    #[test]
    fn templates() {
        let t = Template::parse("Label {{ text }} for {{customer}}; n={{n}}").unwrap();
        let mut fields = Map::new();
        fields.insert("customer".into(), "ACME".into());
        fields.insert("n".into(), 3.into());
        let rendered = t.render(&[("text", "hi")], &fields).unwrap();
        assert_eq!(rendered.text(), "Label hi for ACME; n=3");
        // Only the template's own text is control text.
        let mut expected = Prompt::default();
        for (i, part) in ["Label ", "hi", " for ", "ACME", "; n=", "3"]
            .iter()
            .enumerate()
        {
            if i % 2 == 0 {
                expected.push_control(part);
            } else {
                expected.push_data(part);
            }
        }
        assert_eq!(rendered, expected);
        assert!(t.uses("text") && !t.uses("other"));
        fields.remove("customer");
        let err = t.render(&[("text", "hi")], &fields).unwrap_err();
        assert!(err.contains("`customer`"), "{err}");
        assert!(Template::parse("oops {{text").is_err());
    }

    // Without overlap the pieces are the text, cut at sentence ends, each within the limit.
    #[test]
    fn split_partitions_text() {
        let text = "One two three. Four five six seven.\n\nEight nine. Ten eleven twelve thirteen fourteen fifteen sixteen.";
        let pieces = split(text, 5, 0, words_count);
        assert!(
            pieces.iter().all(|p| words_count(&p.text) <= 5),
            "{pieces:?}"
        );
        let rejoined: Vec<String> = pieces
            .iter()
            .flat_map(|p| p.text.split_whitespace().map(String::from))
            .collect();
        let original: Vec<String> = text.split_whitespace().map(String::from).collect();
        assert_eq!(rejoined, original);
        assert_eq!(pieces[0].text, "One two three.");
        assert_eq!(pieces[1].gap, "\n\n");
        assert_eq!(split("short", 100, 10, words_count).len(), 1);
    }

    // With overlap, each piece starts with whole sentences from the end of the previous one.
    #[test]
    fn split_overlaps() {
        let text = "A b. C d. E f. G h. I j.";
        let pieces = split(text, 4, 2, words_count);
        let texts: Vec<&str> = pieces.iter().map(|p| p.text.as_str()).collect();
        assert_eq!(texts, ["A b. C d.", "C d. E f.", "E f. G h.", "G h. I j."]);
        // A run without spaces is cut by characters.
        let long = split(&"x".repeat(25), 10, 0, |s| s.len());
        assert_eq!(long.len(), 3);
    }

    // Fillers and punctuation do not count; invented or dropped words do.
    #[test]
    fn guard_similarity() {
        let source = words("um so we uh met on Tuesday and the plan is fine");
        let cleaned = words("So we met on Tuesday, and the plan is fine.");
        assert_eq!(similarity(&source, &cleaned), 1.0);
        let drifted = words("The meeting discussed various plans for the future.");
        assert!(similarity(&source, &drifted) < 0.4);
        assert_eq!(similarity(&[], &[]), 1.0);
    }

    // Labels, openers, fences and quotes the model invented are removed; the source's own are kept.
    #[test]
    fn unwraps_invented_wrappers() {
        let source = "um so we met on tuesday and the plan is fine";
        let clean = "So we met on Tuesday, and the plan is fine.";
        for answer in [
            "Transcription: So we met on Tuesday, and the plan is fine.",
            "Corrected text:\nSo we met on Tuesday, and the plan is fine.",
            "Cleaned transcript: So we met on Tuesday, and the plan is fine.",
            "Here is the corrected transcript:\n\nSo we met on Tuesday, and the plan is fine.",
            "Here's the cleaned text: \"So we met on Tuesday, and the plan is fine.\"",
            "Sure! Here is the corrected text:\nSo we met on Tuesday, and the plan is fine.",
            "Sure, So we met on Tuesday, and the plan is fine.",
            "\"So we met on Tuesday, and the plan is fine.\"",
            "“So we met on Tuesday, and the plan is fine.”",
            "```\nSo we met on Tuesday, and the plan is fine.\n```",
            "```text\nSo we met on Tuesday, and the plan is fine.\n```",
            "Output:\n```\n\"So we met on Tuesday, and the plan is fine.\"\n```",
        ] {
            assert_eq!(unwrap_answer(answer, source), clean, "{answer:?}");
        }
        // Text that is the source's own stays as it is.
        assert_eq!(unwrap_answer(clean, source), clean);
        let speaker = "Speaker text: we met at 10:30.";
        assert_eq!(unwrap_answer(speaker, "speaker text: we met at 10:30"), speaker);
        assert_eq!(unwrap_answer("At 10:30 we met.", "at 10:30 we met"), "At 10:30 we met.");
        let quoted = "\"Fine,\" she said.";
        assert_eq!(unwrap_answer(quoted, "fine she said"), quoted);
        assert_eq!(unwrap_answer("Sure, we can.", "sure we can"), "Sure, we can.");
        assert_eq!(unwrap_answer("Note: the plan is fine.", "note the plan is fine"), "Note: the plan is fine.");
    }
}
