//! The `ner` recognizer: PII found by a token-classification model (Rampart PII NER, ONNX).
//!
//! Each text is tokenized with byte offsets and cut into overlapping windows of the model's
//! size, never truncated; a token seen by two windows takes the label from the window where it
//! sits farther from an edge (more context on both sides). Labels are BIO tags of the model's
//! types, mapped onto lai's entity names (`MAPPING`: given name and surname are both `person`,
//! street, building number, city, state and zip are all `address`). Decoding: consecutive
//! labelled tokens of one entity form a span when they touch (word pieces of one word) or when
//! only separators lie between them and the later token continues the entity (an I- tag, or a
//! person/address part: "John Smith", "12 Main St, Springfield, IL 62704"; an untagged region
//! code between address parts joins them too, and a state and ZIP code right after an address
//! belong to it). Spans lose leading
//! and trailing punctuation. A span must start and end at word boundaries (the model sometimes
//! tags the middle of a long number), and an address needs a street name, city or ZIP code: a
//! lone building number ("wrote 11"), room/floor/suite or a number alone (a ZIP code without
//! a street or city) is not an address.
//!
//! The tokenizer's offsets map tokens back through its normalizer, so several tokens can share
//! one character (NFD splits a Hangul syllable into jamo, each its own piece) and offsets need
//! not fall on character boundaries; `char_aligned` makes them safe to slice with before any
//! decoding: every span lies on character boundaries, whatever the script.

use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use anyhow::{Context, anyhow};
use regex::Regex;

use super::recognizers::Found;
use crate::component::threads::Threads;
use crate::engines::onnx::{TextModel, Tokens};
use crate::stages::encoder::Session;

/// Model types (BIO tags without the prefix) and the lai entity each becomes.
pub const MAPPING: &[(&str, &str)] = &[
    ("GIVEN_NAME", "person"),
    ("SURNAME", "person"),
    ("BUILDING_NUMBER", "address"),
    ("STREET_NAME", "address"),
    ("SECONDARY_ADDRESS", "address"),
    ("CITY", "address"),
    ("STATE", "address"),
    ("ZIP_CODE", "address"),
    ("EMAIL", "email"),
    ("PHONE", "phone"),
    ("URL", "url"),
    ("TAX_ID", "tax_id"),
    ("BANK_ACCOUNT", "bank_account"),
    ("ROUTING_NUMBER", "routing_number"),
    ("GOVERNMENT_ID", "government_id"),
    ("PASSPORT", "passport"),
    ("DRIVERS_LICENSE", "drivers_license"),
];

/// The lai entity names the model can find, as pipeline files spell them.
pub const ENTITIES: &[&str] = &[
    "person",
    "address",
    "email",
    "phone",
    "url",
    "tax_id",
    "bank_account",
    "routing_number",
    "government_id",
    "passport",
    "drivers_license",
];

/// Entities whose parts are joined across separators even when the model starts a new tag.
const MULTI_PART: &[&str] = &["person", "address"];

/// Tokens kept in common by consecutive windows.
const OVERLAP: usize = 64;

/// What one output column of the model means.
#[derive(Clone, Copy)]
struct Label {
    /// Index into the stage's entity names (`None`: outside, or an entity not asked for).
    entity: Option<usize>,
    begin: bool,
    /// A street name, city or ZIP code: what makes a run of address parts an address.
    anchor: bool,
}

const OUTSIDE: Label = Label {
    entity: None,
    begin: false,
    anchor: false,
};

/// The model's tokenizer and label map, shared by the stage's workers.
pub struct NerModel {
    text: TextModel,
    labels: Vec<Label>,
    multi_part: Vec<bool>,
    /// The index of `address`, if asked for.
    address: Option<usize>,
}

impl NerModel {
    /// `entity_index(name)` gives the index a found span carries (`None`: not wanted).
    pub fn load(
        text: TextModel,
        config: &Path,
        names: &[String],
        first_index: usize,
    ) -> anyhow::Result<NerModel> {
        let raw = std::fs::read_to_string(config)
            .with_context(|| format!("cannot read {}", config.display()))?;
        let config: serde_json::Value = serde_json::from_str(&raw)
            .with_context(|| format!("{} is not JSON", config.display()))?;
        let id2label = config["id2label"]
            .as_object()
            .ok_or_else(|| anyhow!("{} has no id2label map", "config.json"))?;
        let mut labels = vec![OUTSIDE; id2label.len()];
        for (id, tag) in id2label {
            let id: usize = id
                .parse()
                .context("config.json: id2label key is not a number")?;
            let tag = tag.as_str().unwrap_or("O");
            let (begin, kind) = match tag.split_once('-') {
                Some(("B", kind)) => (true, kind),
                Some(("I", kind)) => (false, kind),
                _ => (false, ""),
            };
            let entity = MAPPING
                .iter()
                .find(|(k, _)| *k == kind)
                .and_then(|(_, e)| names.iter().position(|n| n == e))
                .map(|i| first_index + i);
            if let Some(label) = labels.get_mut(id) {
                let anchor = ["STREET_NAME", "CITY", "ZIP_CODE"].contains(&kind);
                *label = Label {
                    entity,
                    begin,
                    anchor,
                };
            }
        }
        Ok(NerModel {
            text,
            labels,
            multi_part: names
                .iter()
                .map(|n| MULTI_PART.contains(&n.as_str()))
                .collect(),
            address: names
                .iter()
                .position(|n| n == "address")
                .map(|i| first_index + i),
        })
    }
}

/// One worker's NER session.
pub struct NerWorker<'a> {
    pub model: &'a NerModel,
    pub session: Session,
    pub threads: Arc<Threads>,
    pub first_index: usize,
    pub min_score: f32,
}

/// A token's best label so far: its distance from the nearest window edge, label, probability.
#[derive(Clone, Copy)]
struct Vote {
    centrality: usize,
    label: usize,
    score: f32,
}

impl NerWorker<'_> {
    /// Entity spans (byte ranges) for every text, in text order, or why a text could not be
    /// read (it fails alone); an engine error fails them all.
    pub fn find(&mut self, texts: &[&str]) -> anyhow::Result<Vec<Result<Vec<Found>, String>>> {
        let model = self.model;
        let tokenized: Vec<_> = texts.iter().map(|t| model.text.tokenize(t, true)).collect();
        let empty = Tokens::default();
        let tokens: Vec<&Tokens> = tokenized
            .iter()
            .map(|t| t.as_ref().unwrap_or(&empty))
            .collect();
        let mut windows: Vec<&[u32]> = Vec::new();
        let mut owner: Vec<(usize, usize)> = Vec::new();
        for (i, t) in tokens.iter().enumerate() {
            for w in model.text.windows(t.ids.len(), OVERLAP) {
                owner.push((i, w.start));
                windows.push(&t.ids[w]);
            }
        }
        let mut votes: Vec<Vec<Option<Vote>>> =
            tokens.iter().map(|t| vec![None; t.ids.len()]).collect();
        let (threads, n) = (&self.threads, self.session.threads);
        self.session.count(&windows);
        self.session.encoder.run(
            &model.text,
            &windows,
            self.session.token_budget,
            || threads.borrow(Some(n)),
            |w, rows, width| {
                let (text, start) = owner[w];
                let len = rows.len() / width - 2;
                // Row 0 is [CLS]; the last is [SEP].
                for (k, logits) in rows.chunks_exact(width).skip(1).take(len).enumerate() {
                    let (label, score) = argmax_softmax(logits);
                    let centrality = k.min(len - 1 - k);
                    let slot = &mut votes[text][start + k];
                    if slot.is_none_or(|v| v.centrality < centrality) {
                        *slot = Some(Vote {
                            centrality,
                            label,
                            score,
                        });
                    }
                }
            },
        )?;
        Ok(texts
            .iter()
            .zip(&tokenized)
            .zip(&votes)
            .map(|((text, t), votes)| {
                t.as_ref()
                    .map(|t| self.decode(text, &char_aligned(text, &t.offsets), votes))
                    .map_err(|e| format!("NER model: {e}"))
            })
            .collect())
    }

    /// Spans from the tokens' labels; `offsets` come from `char_aligned`.
    fn decode(&self, text: &str, offsets: &[(usize, usize)], votes: &[Option<Vote>]) -> Vec<Found> {
        let mut found: Vec<Found> = Vec::new();
        // Per span: whether it has an anchor part (always true outside addresses).
        let mut anchored: Vec<bool> = Vec::new();
        let mut open = false;
        for (&(start, end), vote) in offsets.iter().zip(votes) {
            let label = vote
                .filter(|v| v.score >= self.min_score)
                .and_then(|v| self.model.labels.get(v.label).copied())
                .unwrap_or(OUTSIDE);
            let last = found.last_mut().filter(|_| open);
            let touching = last.as_ref().is_some_and(|f| f.span.end == start);
            match (label.entity, last) {
                // A word piece of a word already inside a span continues it.
                (None, Some(f)) if touching => f.span.end = end,
                (None, _) => open = false,
                (Some(entity), Some(f))
                    if f.entity == entity
                        && (touching || {
                            let multi_part = self.model.multi_part[entity - self.first_index];
                            let gap = &text[f.span.end..start];
                            (is_separator(gap) && (!label.begin || multi_part))
                                || (multi_part && is_region_code(gap))
                        }) =>
                {
                    f.span.end = end;
                    if let Some(a) = anchored.last_mut() {
                        *a |= label.anchor;
                    }
                }
                (Some(entity), _) => {
                    found.push(Found {
                        span: start..end,
                        entity,
                    });
                    anchored.push(label.anchor || self.model.address != Some(entity));
                    open = true;
                }
            }
        }
        let mut anchored = anchored.into_iter();
        found.retain_mut(|f| {
            let anchored = anchored.next().unwrap_or(false);
            if self.model.address == Some(f.entity) {
                f.span.end += state_and_zip(&text[f.span.end..]);
            }
            f.span = trim(text, f.span.clone());
            // A fragment of a longer word or number ("...358[979]") is no finding.
            let inside_word = text[..f.span.start]
                .chars()
                .next_back()
                .is_some_and(char::is_alphanumeric)
                || text[f.span.end..]
                    .chars()
                    .next()
                    .is_some_and(char::is_alphanumeric);
            // An address is words too: a number alone (a ZIP, a figure) is not one.
            let wordless = self.model.address == Some(f.entity)
                && !text[f.span.clone()].chars().any(char::is_alphabetic);
            !f.span.is_empty() && anchored && !inside_word && !wordless
        });
        found
    }
}

/// Token byte ranges made safe to slice `text` with: inside it, widened to character
/// boundaries, and in order without overlap (a token that shares characters with the one before
/// starts where that one ends, so it may become empty).
fn char_aligned(text: &str, offsets: &[(usize, usize)]) -> Vec<(usize, usize)> {
    let mut done = 0;
    offsets
        .iter()
        .map(|&(start, end)| {
            let start = text.floor_char_boundary(start).max(done);
            let end = text.ceil_char_boundary(end).max(start);
            done = end;
            (start, end)
        })
        .collect()
}

/// What may lie between two parts of one entity: a few spaces and punctuation marks.
fn is_separator(gap: &str) -> bool {
    gap.len() <= 3
        && gap
            .chars()
            .all(|c| c.is_whitespace() || ",.-#/".contains(c))
}

/// Length of a US state code and ZIP code (", IL 62704") at the start of `rest`, else 0: the
/// model often leaves them untagged after a street and city.
fn state_and_zip(rest: &str) -> usize {
    static PATTERN: OnceLock<Regex> = OnceLock::new();
    PATTERN
        .get_or_init(|| {
            Regex::new(r"^,?\s{0,2}[A-Z]{2}\s{1,2}\d{5}(-\d{4})?\b")
                .expect("a valid regex. This is a bug.")
        })
        .find(rest)
        .map_or(0, |m| m.end())
}

/// A state or region code between address parts that the model left untagged: ", IL ".
fn is_region_code(gap: &str) -> bool {
    let code = gap.trim_matches(|c: char| c.is_whitespace() || c == ',');
    gap.len() <= 7 && (2..=3).contains(&code.len()) && code.chars().all(|c| c.is_ascii_uppercase())
}

/// The span without leading or trailing spaces and punctuation (a sentence's full stop).
fn trim(text: &str, span: Range<usize>) -> Range<usize> {
    let edge = |c: char| c.is_whitespace() || ",.;:!?()\"'".contains(c);
    let inner = &text[span.clone()];
    let start = span.start + (inner.len() - inner.trim_start_matches(edge).len());
    let end = span.end - (inner.len() - inner.trim_end_matches(edge).len());
    start..end.max(start)
}

fn argmax_softmax(logits: &[f32]) -> (usize, f32) {
    let (best, max) =
        logits
            .iter()
            .copied()
            .enumerate()
            .fold(
                (0, f32::NEG_INFINITY),
                |a, (i, x)| if x > a.1 { (i, x) } else { a },
            );
    let sum: f32 = logits.iter().map(|x| (x - max).exp()).sum();
    (best, 1.0 / sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_of_the_best() {
        let (i, p) = argmax_softmax(&[0.0, 2.0, 0.0]);
        assert_eq!(i, 1);
        assert!((p - 0.787).abs() < 0.001);
    }

    #[test]
    fn trims_punctuation() {
        let text = "in Springfield.";
        assert_eq!(&text[trim(text, 2..15)], "Springfield");
        assert_eq!(trim(text, 14..15), 15..15);
    }

    // Offsets inside characters, shared or overlapping (jamo of one Hangul syllable, an emoji
    // with a skin tone, a letter with a combining accent) become ordered ranges on character
    // boundaries that every slice of the decoder can take.
    #[test]
    fn offsets_align_to_characters() {
        let text = "김민준 👍🏽 e\u{301}x";
        // 김 0..3, 민 3..6, 준 6..9, space, 👍 10..14, 🏽 14..18, space, e 19..20, ◌́ 20..22, x 22..23.
        let raw = [
            (0, 3),
            (0, 3),
            (1, 4),
            (6, 9),
            (5, 7),
            (11, 13),
            (10, 18),
            (19, 20),
            (20, 21),
            (21, 23),
            (30, 40),
        ];
        let aligned = char_aligned(text, &raw);
        assert_eq!(
            aligned,
            [
                (0, 3),
                (3, 3),
                (3, 6),
                (6, 9),
                (9, 9),
                (10, 14),
                (14, 18),
                (19, 20),
                (20, 22),
                (22, 23),
                (23, 23)
            ]
        );
        for &(start, end) in &aligned {
            let _ = &text[start..end];
        }
        for pair in aligned.windows(2) {
            let _ = &text[pair[0].1..pair[1].0];
        }
        assert_eq!(&text[trim(text, 9..14)], "👍");
        assert_eq!(&text[trim(text, 19..23)], "e\u{301}x");
    }

    // The real Rampart tokenizer on Korean, Japanese, Arabic, Hindi, Greek, emoji and combining
    // marks: its raw offsets share characters (the Korean name), and the aligned ones slice
    // every text on character boundaries.
    #[test]
    fn real_tokenizer_offsets_align() {
        let dir = crate::models::models_dir(None);
        let text_model =
            TextModel::load(&dir.join("rampart-pii/tokenizer.json"), 512).expect("rampart-pii");
        let texts = [
            "김민준 씨는 서울시 강남구 테헤란로 152에 삽니다.",
            "山田太郎さんの電話番号は０３－１２３４－５６７８です。",
            "اسمي محمد عبد الله وأسكن في القاهرة",
            "मेरा नाम राहुल शर्मा है",
            "Ο Γιώργος Παπαδόπουλος μένει στην Αθήνα",
            "José Müller e\u{301}e\u{301} 👍🏽👨‍👩‍👧 ﬁle ǅ Ⅻ ㎏ ﾊﾟ",
        ];
        let mut shared = 0;
        for text in texts {
            let tokens = text_model.tokenize(text, true).unwrap();
            shared += tokens
                .offsets
                .windows(2)
                .filter(|p| p[1].0 < p[0].1)
                .count();
            let aligned = char_aligned(text, &tokens.offsets);
            assert_eq!(aligned.len(), tokens.ids.len());
            let mut done = 0;
            for &(start, end) in &aligned {
                assert!(done <= start && start <= end, "{text}: {aligned:?}");
                assert!(text.is_char_boundary(start) && text.is_char_boundary(end));
                done = end;
            }
        }
        assert!(shared > 0, "the texts no longer exercise shared offsets");
    }

    #[test]
    fn separators() {
        assert!(is_separator(", "));
        assert!(is_separator(" "));
        assert!(!is_separator(" and "));
        assert!(is_region_code(", IL "));
        assert!(!is_region_code(" and "));
        assert_eq!(state_and_zip(", IL 62704 next"), 10);
        assert_eq!(state_and_zip(" next week"), 0);
    }
}
