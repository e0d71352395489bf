//! The `redact` stage: finds PII in text fields with rule recognizers and replaces it.
//!
//! Recognizers (user regexes, deny-lists, built-in entities) propose spans; overlaps are resolved
//! by one documented rule (earliest start wins, then the longest span, then the more specific
//! recognizer: your patterns, then deny-lists, then built-ins in `BUILTIN` order, then the NER
//! model); an operator (`tag`, `mask`, `hash`, `vault`, `replace`, `year`, `keep`) rewrites
//! each span; `hash` and `vault` make keyed pseudonyms, and `vault` seals the values for
//! `lai reveal` (`vault.rs`). With `ner_model` set, a
//! token-classification model (`ner.rs`) also finds names, addresses and ids that rules cannot;
//! its spans are one more recognizer under the same rule, marked `"source": "ner"` in the
//! summary, except where the rules veto them (`recognizers::Vetoes`). Each item gets a summary field
//! with entity types, character offsets and counts, never the removed values. Nothing here logs
//! item text.

mod ner;
mod recognizers;
pub mod vault;

use std::sync::Arc;

use serde_json::{Map, Value, json};

use recognizers::{BUILTIN, BytesPresent, ENTITIES_DOC, Found, Recognizer};
use vault::{KeySource, Keys, Vault};

use super::encoder::{TOKEN_BUDGET, session, text_model};
use super::common::{MAX_WAIT, Shared, TIMEOUT, WORKERS, batch_size};
use crate::component::{Meter, Per, Stage, StartContext, Unit, Worker};
use crate::device::{DEVICE, Placement};
use crate::models::{self, ModelRef};
use crate::item::Item;
use crate::options::ComponentKind;
use crate::options::{Default, Diagnostics, OptionSpec, Options, Ty, opt};

/// Characters of the fields the stage read (what PII-detection services charge by).
pub static CHARS: Unit = Unit {
    total: "chars",
    rate: "chars_per_busy_s",
    per: Per::BusySecond,
    whole: true,
    describe: |chars, _| format!("{chars} characters read"),
};

pub const KIND: ComponentKind<dyn Stage> = ComponentKind {
    name: "redact",
    doc: "Replace personal data (emails, phone and fax numbers, cards, IBANs, SSNs and national ids, medical record, health plan, account, licence, vehicle and device numbers, passports, IPs, URLs, your own patterns and deny-lists) in text fields.",
    options: OPTIONS,
    build,
};

const OPERATORS: &[&str] = &["tag", "mask", "hash", "vault"];

const OPTIONS: &[OptionSpec] = &[
    batch_size("256"),
    MAX_WAIT,
    TIMEOUT,
    WORKERS,
    opt(
        "fields",
        Ty::StrList,
        Default::Value("[\"text\"]"),
        "Text fields to redact.",
    ),
    opt(
        "entities",
        Ty::ChoiceList(BUILTIN),
        Default::Value(
            "[\"email\", \"url\", \"it_codice_fiscale\", \"fr_nir\", \"uk_nino\", \"es_dni\", \"de_tax_id\", \"us_itin\", \"nhs_number\", \"nl_bsn\", \"ca_sin\", \"medical_record\", \"health_plan\", \"account_number\", \"license_number\", \"vehicle_id\", \"device_id\", \"passport\", \"fax\", \"credit_card\", \"iban\", \"ssn\", \"date_of_birth\", \"ip_address\", \"phone\"]",
        ),
        ENTITIES_DOC,
    ),
    opt(
        "patterns",
        Ty::StrTable,
        Default::Value("{}"),
        "Your own entities: `{ employee_id = 'EMP-\\d{6}' }` (Rust regex syntax).",
    ),
    opt(
        "deny",
        Ty::StrListTable,
        Default::Value("{}"),
        "Deny-lists, matched as whole words, any case: `{ project = [\"Apollo\"] }`.",
    ),
    opt(
        "operator",
        Ty::Choice(OPERATORS),
        Default::Value("\"tag\""),
        "tag: `[EMAIL]`; mask: `*` per character; hash: `[EMAIL_5f1c09ab3e7d2a41]`, a keyed pseudonym (see `key`): the same value, the same pseudonym in every run with that key; vault: a hash pseudonym whose value is also sealed in the `vault` file for `lai reveal`.",
    ),
    opt(
        "operators",
        Ty::StrTable,
        Default::Value("{}"),
        "Per entity, overriding `operator`: `{ phone = \"mask:4\", date_of_birth = \"year\", email = \"replace:[EMAIL]\", url = \"keep\" }`. tag, mask (mask:N keeps the last N characters), hash, vault, replace:TEXT, year (a date's year alone), keep (left as written).",
    ),
    opt(
        "allow",
        Ty::StrList,
        Default::Value("[]"),
        "Values never redacted, compared whole in any case (your organisation's name, a public support address).",
    ),
    opt(
        "mask_char",
        Ty::Str,
        Default::Value("\"*\""),
        "Character used by the mask operator.",
    ),
    opt(
        "key",
        Ty::Str,
        Default::Value("\"env:LAI_REDACT_KEY\""),
        "The secret key of `hash` and `vault`: \"file:/etc/lai/redact.key\" (a file the site keeps; make one with `head -c 32 /dev/urandom`), \"env:NAME\", or \"per-run\" (random: pseudonyms hold within one run only, no vault). A run that hashes without a key stops before any item.",
    ),
    opt(
        "vault",
        Ty::Str,
        Default::Value("\"{out}/redact.vault\""),
        "File where the `vault` operator appends each pseudonym's value, sealed with AES-256-GCM under the key (`{out}` is the --out folder); `lai reveal` opens it. Never written to stdout.",
    ),
    opt(
        "missing",
        Ty::Choice(&["error", "skip"]),
        Default::Value("\"error\""),
        "A listed field absent from an item: fail the item (error) or leave it (skip).",
    ),
    opt(
        "ner_model",
        Ty::Model(&models::TOKEN_CLASSIFIER),
        Default::Unset,
        "Token-classification ONNX model for names, addresses and ids: a catalog name (e.g. \"rampart-pii\"), or files by path: { path = \"/models/ner.onnx\", sha256 = \"...\", tokenizer = \"/models/tokenizer.json\", config = \"/models/config.json\" } (config.json holds id2label); leave out for rules only.",
    ),
    opt(
        "ner_entities",
        Ty::ChoiceList(ner::ENTITIES),
        Default::Value(
            "[\"person\", \"address\", \"email\", \"phone\", \"url\", \"tax_id\", \"bank_account\", \"routing_number\", \"government_id\", \"passport\", \"drivers_license\"]",
        ),
        "Entities the NER model may report.",
    ),
    opt(
        "ner_min_score",
        Ty::Float { min: 0.0, max: 1.0 },
        Default::Value("0.6"),
        "Least probability of a token's label for the NER model's finding to count.",
    ),
    opt(
        "threads",
        Ty::Int { min: 0, max: 1024 },
        Default::Value("1"),
        "ONNX Runtime threads per worker for the NER model; 0 uses all of `--jobs`. One thread per worker, one worker per job, ran fastest on CPU.",
    ).speed(),
    TOKEN_BUDGET,
    DEVICE,
    opt(
        "summary_field",
        Ty::Str,
        Default::Value("\"redactions\""),
        "Field that receives the summary: counts by entity and where each replacement sits in the redacted text (character offsets), never values or their lengths.",
    ),
];

struct NerSpec {
    model_name: String,
    model_ref: ModelRef,
    entities: Vec<String>,
    min_score: f32,
    threads: usize,
    token_budget: usize,
    device: Placement,
    model: Shared<ner::NerModel>,
}

#[derive(Clone)]
enum Operator {
    Tag,
    /// The mask character for each character, but the last `keep`.
    Mask(char, usize),
    /// Keyed pseudonyms (`vault::Keys::pseudonym`).
    Hash,
    /// Keyed pseudonyms whose values are sealed in the vault.
    Vault,
    /// A fixed text.
    Replace(String),
    /// A date's year alone (Safe Harbor keeps years); a tag if it shows no 4-digit year.
    Year,
    /// Left as written (found, counted in no summary).
    Keep,
}

struct Redact {
    fields: Vec<String>,
    recognizers: Vec<Recognizer>,
    /// Entity name of every `Found::entity` index: the recognizers', then the NER model's.
    names: Vec<String>,
    ner: Option<NerSpec>,
    /// What the rules know is no PII, which the model's spans may not cover.
    vetoes: recognizers::Vetoes,
    operator: Operator,
    /// Operators of entities that do not use `operator`.
    operators: Vec<(String, Operator)>,
    /// Values never redacted, lower case.
    allow: Vec<String>,
    skip_missing: bool,
    summary_field: String,
    key: KeySource,
    /// The vault's path template; used when some entity's operator is `vault`.
    vault: String,
    /// The key (read by `prepare`, before the run opens its outputs) and the vault (opened by
    /// the first worker), shared by all workers.
    keys: Shared<Keys>,
    opened_vault: Shared<Vault>,
}

fn build(options: &Options, diag: &mut Diagnostics) -> Option<Box<dyn Stage>> {
    // Built in priority order: the index of a recognizer breaks ties between equal spans.
    let mut recognizers = Vec::new();
    let mut ok = true;
    for pattern in options.str_table("patterns") {
        match Recognizer::custom(&pattern.name, &pattern.value) {
            Ok(r) => recognizers.push(r),
            Err(e) => {
                ok = false;
                diag.error(
                    &pattern.span,
                    format!(
                        "pattern `{}` in {} is not a valid regex: {}",
                        pattern.name,
                        options.context,
                        first_line(&e.to_string())
                    ),
                );
            }
        }
    }
    for list in options.str_list_table("deny") {
        match Recognizer::deny_list(&list.name, &list.value) {
            Ok(r) => recognizers.push(r),
            Err(e) => {
                ok = false;
                diag.error(
                    &list.span,
                    format!("deny-list `{}` in {}: {e}", list.name, options.context),
                );
            }
        }
    }
    let entities = options.str_list("entities");
    for entity in BUILTIN.iter().filter(|e| entities.iter().any(|x| x == *e)) {
        recognizers.extend(recognizers::builtin(entity));
    }
    let mask = options.str("mask_char");
    let mut chars = mask.chars();
    let mask = match (chars.next(), chars.next()) {
        (Some(c), None) => c,
        _ => {
            diag.error(
                &options.span_of("mask_char"),
                format!(
                    "`mask_char` in {} must be exactly one character, e.g. \"*\"",
                    options.context
                ),
            );
            return None;
        }
    };
    let operator = parse_operator(&options.str("operator"), mask)
        .expect("`operator` is one of OPERATORS. This is a bug.");
    let Some(key) = KeySource::parse(&options.str("key")) else {
        diag.error(
            &options.span_of("key"),
            format!(
                "`key` in {} must be \"file:PATH\", \"env:NAME\" or \"per-run\"",
                options.context
            ),
        );
        return None;
    };
    let mut known: Vec<String> = BUILTIN
        .iter()
        .chain(ner::ENTITIES)
        .map(|e| e.to_string())
        .chain(recognizers.iter().map(|r| r.entity.clone()))
        .collect();
    known.sort();
    known.dedup();
    let mut operators = Vec::new();
    for entry in options.str_table("operators") {
        if !known.contains(&entry.name) {
            ok = false;
            diag.error(
                &entry.span,
                format!(
                    "`operators` in {} names `{}`, which is no entity; use one of: {}",
                    options.context,
                    entry.name,
                    known.join(", ")
                ),
            );
            continue;
        }
        match parse_operator(&entry.value, mask) {
            Some(op) => operators.push((entry.name.clone(), op)),
            None => {
                ok = false;
                diag.error(
                    &entry.span,
                    format!(
                        "`operators.{}` in {} is `{}`; use tag, mask, mask:N, hash, vault, replace:TEXT, year or keep",
                        entry.name, options.context, entry.value
                    ),
                );
            }
        }
    }
    let vaults = std::iter::once(&operator)
        .chain(operators.iter().map(|(_, op)| op))
        .any(|op| matches!(op, Operator::Vault));
    if vaults && key == KeySource::PerRun {
        ok = false;
        diag.error(
            &options.span_of("key"),
            format!(
                "the `vault` operator in {} needs the site's key: `key = \"per-run\"` could never reveal anything; use \"file:PATH\" or \"env:NAME\"",
                options.context
            ),
        );
    }
    if !ok {
        return None;
    }
    let device = Placement::from_options(options, diag)?;
    let ner_model = ModelRef::from_option(options, "ner_model", &models::TOKEN_CLASSIFIER, diag);
    let ner = ner_model.map(|model| NerSpec {
        model_name: model.name(),
        model_ref: model,
        entities: options.str_list("ner_entities"),
        min_score: options.float("ner_min_score") as f32,
        threads: options.usize("threads"),
        token_budget: options.usize("token_budget"),
        device,
        model: Shared::default(),
    });
    let names = recognizers
        .iter()
        .map(|r| r.entity.clone())
        .chain(ner.iter().flat_map(|n| n.entities.clone()))
        .collect();
    Some(Box::new(Redact {
        fields: options.str_list("fields"),
        recognizers,
        names,
        ner,
        vetoes: recognizers::Vetoes::default(),
        operator,
        operators,
        allow: options
            .str_list("allow")
            .iter()
            .map(|v| v.trim().to_lowercase())
            .collect(),
        skip_missing: options.str("missing") == "skip",
        summary_field: options.str("summary_field"),
        key,
        vault: options.str("vault"),
        keys: Shared::default(),
        opened_vault: Shared::default(),
    }))
}

/// An operator from its spelling in a pipeline file (`mask:4`, `replace:[ID]`); `None` if it is
/// none.
fn parse_operator(spec: &str, mask: char) -> Option<Operator> {
    let (name, arg) = spec.split_once(':').map_or((spec, None), |(n, a)| (n, Some(a)));
    Some(match (name, arg) {
        ("tag", None) => Operator::Tag,
        ("mask", None) => Operator::Mask(mask, 0),
        ("mask", Some(n)) => Operator::Mask(mask, n.parse().ok()?),
        ("hash", None) => Operator::Hash,
        ("vault", None) => Operator::Vault,
        ("replace", Some(text)) => Operator::Replace(text.to_string()),
        ("year", None) => Operator::Year,
        ("keep", None) => Operator::Keep,
        _ => return None,
    })
}

/// The 4-digit year in a date as written ("12/03/1984", "March 3, 1984").
fn year_of(date: &str) -> Option<&str> {
    date.split(|c: char| !c.is_ascii_digit())
        .find(|n| n.len() == 4)
}

fn first_line(s: &str) -> &str {
    s.lines().last().unwrap_or(s).trim()
}

impl Redact {
    /// The operator for `entity`: its own in `operators`, else `operator`.
    fn operator_of(&self, entity: &str) -> &Operator {
        self.operators
            .iter()
            .find(|(e, _)| e == entity)
            .map_or(&self.operator, |(_, op)| op)
    }

    fn uses(&self, wanted: fn(&Operator) -> bool) -> bool {
        std::iter::once(&self.operator)
            .chain(self.operators.iter().map(|(_, op)| op))
            .any(wanted)
    }

    /// The key, read once, if some entity hashes or vaults.
    fn keys(&self) -> anyhow::Result<Option<&Keys>> {
        if !self.uses(|op| matches!(op, Operator::Hash | Operator::Vault)) {
            return Ok(None);
        }
        self.keys.get(|| Keys::load(&self.key)).map(Some)
    }

    /// The vault, opened once, if some entity vaults.
    fn vault(&self, keys: &Keys, ctx: &StartContext) -> anyhow::Result<Option<&Vault>> {
        if !self.uses(|op| matches!(op, Operator::Vault)) {
            return Ok(None);
        }
        let path = ctx.resolve(&self.vault);
        self.opened_vault.get(|| Vault::open(&path, keys)).map(Some)
    }
}

impl Stage for Redact {
    fn models(&self) -> Vec<ModelRef> {
        self.ner
            .iter()
            .flat_map(|n| {
                [
                    n.model_ref.clone(),
                    ModelRef::Catalog(super::encoder::runtime().to_string()),
                ]
            })
            .collect()
    }

    fn prepare(&self) -> anyhow::Result<()> {
        self.keys().map(drop)
    }

    fn redacts(&self) -> Vec<String> {
        self.fields.clone()
    }

    fn writes(&self) -> Vec<String> {
        if self.uses(|op| matches!(op, Operator::Vault)) {
            vec![self.vault.clone()]
        } else {
            Vec::new()
        }
    }

    fn start(&self, ctx: &StartContext) -> anyhow::Result<Box<dyn Worker + '_>> {
        let keys = self.keys()?;
        let vault = match &keys {
            Some(keys) => self.vault(keys, ctx)?,
            None => None,
        };
        let ner = match &self.ner {
            None => None,
            Some(spec) => {
                let first_index = self.recognizers.len();
                let model = spec.model.get(|| {
                    let (text, _) = text_model(ctx, &spec.model_name)?;
                    let config = ctx.model_file(&spec.model_name, "onnx", "config")?;
                    ner::NerModel::load(text, config, &spec.entities, first_index)
                })?;
                Some(ner::NerWorker {
                    model,
                    session: session(
                        ctx,
                        &spec.model_name,
                        spec.threads,
                        spec.token_budget,
                        spec.device,
                    )?,
                    threads: Arc::clone(&ctx.threads),
                    first_index,
                    min_score: spec.min_score,
                })
            }
        };
        Ok(Box::new(RedactWorker {
            stage: self,
            meter: ctx.meter.clone(),
            found: Vec::new(),
            ner,
            keys,
            vault,
            sealed: Vec::new(),
        }))
    }
}

struct RedactWorker<'a> {
    stage: &'a Redact,
    meter: Meter,
    /// Reused between items to avoid an allocation per text.
    found: Vec<Found>,
    ner: Option<ner::NerWorker<'a>>,
    keys: Option<&'a Keys>,
    vault: Option<&'a Vault>,
    /// The batch's (pseudonym, value) pairs for the vault, written before the batch leaves.
    sealed: Vec<(String, String)>,
}

impl Worker for RedactWorker<'_> {
    fn process(&mut self, batch: &mut [Item]) -> Vec<Result<(), String>> {
        // The model sees every text of the batch at once; rules run per text. `model[i][f]`:
        // the model's spans in item i's field f.
        let fields = &self.stage.fields;
        let chars: usize = batch
            .iter()
            .flat_map(|item| fields.iter().filter_map(|f| item.fields.get(f)?.as_str()))
            .map(|text| text.chars().count())
            .sum();
        self.meter.add(&CHARS, chars as f64);
        let mut model: Vec<Vec<Vec<Found>>> = vec![vec![Vec::new(); fields.len()]; batch.len()];
        // An item whose text the model could not read fails rather than pass unchecked.
        let mut unreadable: Vec<Option<String>> = vec![None; batch.len()];
        if let Some(ner) = self.ner.as_mut() {
            let mut texts = Vec::new();
            let mut keys = Vec::new();
            for (i, item) in batch.iter().enumerate() {
                for (f, name) in fields.iter().enumerate() {
                    if let Some(text) = item.fields.get(name).and_then(Value::as_str) {
                        texts.push(text);
                        keys.push((i, f));
                    }
                }
            }
            match ner.find(&texts) {
                Ok(spans) => {
                    for ((i, f), spans) in keys.into_iter().zip(spans) {
                        match spans {
                            Ok(spans) => model[i][f] = spans,
                            Err(e) => unreadable[i] = Some(e),
                        }
                    }
                }
                Err(e) => return vec![Err(format!("NER model failed: {e:#}")); batch.len()],
            }
        }
        let results = batch
            .iter_mut()
            .zip(model)
            .zip(unreadable)
            .map(|((item, model), unreadable)| match unreadable {
                Some(e) => Err(e),
                None => {
                    // A failed item's values go nowhere, the vault included.
                    let sealed = self.sealed.len();
                    let result = self.redact_item(item, model);
                    if result.is_err() {
                        self.sealed.truncate(sealed);
                    }
                    result
                }
            })
            .collect();
        // No record may name a pseudonym that the vault does not hold.
        let sealed = std::mem::take(&mut self.sealed);
        if let (Some(vault), Some(keys)) = (self.vault, self.keys)
            && let Err(e) = vault.record(keys, &sealed)
        {
            return vec![Err(format!("{e:#}")); batch.len()];
        }
        results
    }
}

impl RedactWorker<'_> {
    /// `model` holds the NER model's spans for each of the stage's fields.
    fn redact_item(&mut self, item: &mut Item, mut model: Vec<Vec<Found>>) -> Result<(), String> {
        let stage = self.stage;
        let mut spans = Vec::new();
        let mut counts: Map<String, Value> = Map::new();
        for (index, field) in stage.fields.iter().enumerate() {
            if stage.skip_missing && !item.fields.contains_key(field) {
                continue;
            }
            let text = item.text(field).map_err(|e| {
                format!("{e}; add it to the input, list only text fields in `fields`, or set `missing = \"skip\"`")
            })?;
            self.find(text, std::mem::take(&mut model[index]));
            if self.found.is_empty() {
                continue;
            }
            let (redacted, char_spans) = self.rewrite(text);
            for (entity, start, end, by_model) in char_spans {
                let count = counts.entry(entity.clone()).or_insert(json!(0));
                *count = json!(count.as_u64().unwrap_or(0) + 1);
                let source = if by_model { "ner" } else { "rule" };
                spans.push(json!({ "field": field, "entity": entity, "start": start, "end": end, "source": source }));
            }
            item.fields.insert(field.clone(), Value::String(redacted));
        }
        item.fields.insert(
            stage.summary_field.clone(),
            json!({ "count": spans.len(), "by_entity": counts, "spans": spans }),
        );
        Ok(())
    }

    /// Fills `self.found` with non-overlapping spans in text order.
    ///
    /// Overlaps: the span that starts first wins; at the same start the longer one; at equal
    /// length the more specific recognizer (the lower index, see `build`). A model span that is
    /// mostly text the rules rejected or know to be no PII (`Vetoes`) is dropped first.
    fn find(&mut self, text: &str, mut model_spans: Vec<Found>) {
        self.found.clear();
        if !model_spans.is_empty() {
            let vetoes = self.stage.vetoes.find(text);
            model_spans.retain(|f| {
                let vetoed: usize = vetoes
                    .iter()
                    .map(|v| f.span.end.min(v.end).saturating_sub(f.span.start.max(v.start)))
                    .sum();
                2 * vetoed < f.span.len()
            });
        }
        self.found.extend(model_spans);
        let present = BytesPresent::of(text);
        for (i, r) in self.stage.recognizers.iter().enumerate() {
            r.find_into(text, &present, i, &mut self.found);
        }
        // What stays as written: allowed values, and entities whose operator is `keep`.
        let stage = self.stage;
        self.found.retain(|f| {
            let kept = matches!(stage.operator_of(&stage.names[f.entity]), Operator::Keep);
            let value = text[f.span.clone()].trim().to_lowercase();
            !kept && !stage.allow.contains(&value)
        });
        self.found.sort_by(|a, b| {
            a.span
                .start
                .cmp(&b.span.start)
                .then(b.span.end.cmp(&a.span.end))
                .then(a.entity.cmp(&b.entity))
        });
        let mut end = 0;
        self.found.retain(|f| {
            let keep = f.span.start >= end;
            if keep {
                end = f.span.end;
            }
            keep
        });
    }

    /// The rewritten text and, per span, (entity, start, end, found by the model) in characters
    /// of the rewritten text: where the replacement sits, so the summary never tells how long
    /// a removed value was (beyond what the operator itself shows).
    fn rewrite(&mut self, text: &str) -> (String, Vec<(String, usize, usize, bool)>) {
        let mut out = String::with_capacity(text.len());
        let mut spans = Vec::with_capacity(self.found.len());
        let (mut byte_pos, mut char_pos) = (0, 0);
        for f in &self.found {
            let entity = &self.stage.names[f.entity];
            let before = &text[byte_pos..f.span.start];
            out.push_str(before);
            char_pos += before.chars().count();
            let value = &text[f.span.clone()];
            let replacement_start = out.len();
            let tag = |out: &mut String| {
                out.push('[');
                out.push_str(&entity.to_uppercase());
                out.push(']');
            };
            match self.stage.operator_of(entity) {
                Operator::Tag | Operator::Keep => tag(&mut out),
                Operator::Mask(c, keep) => {
                    let n = value.chars().count();
                    out.extend(std::iter::repeat_n(*c, n.saturating_sub(*keep)));
                    out.extend(value.chars().skip(n.saturating_sub(*keep)));
                }
                op @ (Operator::Hash | Operator::Vault) => {
                    let keys = (self.keys)
                        .expect("start reads the key when an operator hashes. This is a bug.");
                    let pseudonym = keys.pseudonym(entity, value);
                    out.push('[');
                    out.push_str(&pseudonym);
                    out.push(']');
                    if matches!(op, Operator::Vault) {
                        self.sealed.push((pseudonym, value.to_string()));
                    }
                }
                Operator::Replace(text) => out.push_str(text),
                Operator::Year => match year_of(value) {
                    Some(year) => out.push_str(year),
                    None => tag(&mut out),
                },
            }
            let replacement_chars = out[replacement_start..].chars().count();
            let by_model = f.entity >= self.stage.recognizers.len();
            spans.push((
                entity.clone(),
                char_pos,
                char_pos + replacement_chars,
                by_model,
            ));
            char_pos += replacement_chars;
            byte_pos = f.span.end;
        }
        out.push_str(&text[byte_pos..]);
        (out, spans)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::Options;

    fn stage(operator: Operator) -> Redact {
        let options = Options::defaults("test", OPTIONS);
        let mut recognizers = Vec::new();
        for entity in options.str_list("entities") {
            recognizers.extend(recognizers::builtin(&entity));
        }
        Redact {
            fields: vec!["text".into()],
            names: recognizers.iter().map(|r| r.entity.clone()).collect(),
            ner: None,
            vetoes: recognizers::Vetoes::default(),
            recognizers,
            operator,
            operators: Vec::new(),
            allow: Vec::new(),
            skip_missing: false,
            summary_field: "redactions".into(),
            key: KeySource::PerRun,
            vault: "{out}/redact.vault".into(),
            keys: Shared::default(),
            opened_vault: Shared::default(),
        }
    }

    // A model span over a number that fails Luhn, a ticket id or an amount is dropped; one
    // over a name, or a number the rules do not know, stays.
    #[test]
    fn rules_veto_the_model() {
        let mut stage = stage(Operator::Tag);
        stage.names.push("person".into()); // the model's entity, after the recognizers'.
        let mut worker = RedactWorker {
            stage: &stage,
            meter: StartContext::detached(&[]).meter,
            found: Vec::new(),
            ner: None,
            keys: None,
            vault: None,
            sealed: Vec::new(),
        };
        let text = "Order 4111 1111 1111 1112 for Jane Roe, ticket INC-2024-000123, $1,250.00, MRN 48213377";
        let span = |s: &str| {
            let at = text.find(s).unwrap();
            Found {
                span: at..at + s.len(),
                entity: stage.recognizers.len(),
            }
        };
        let model = ["4111 1111 1111 1112", "Jane Roe", "INC-2024-000123", "$1,250.00", "48213377"];
        worker.find(text, model.iter().map(|s| span(s)).collect());
        let kept: Vec<&str> = worker.found.iter().map(|f| &text[f.span.clone()]).collect();
        assert_eq!(kept, ["Jane Roe", "48213377"]);
    }

    // Every built-in entity is on by default but the Safe Harbor generalisations (every date,
    // old ages), which pipelines/redact-hipaa.toml turns on.
    #[test]
    fn default_entities() {
        let defaults = Options::defaults("test", OPTIONS).str_list("entities");
        let expected: Vec<&str> = BUILTIN
            .iter()
            .copied()
            .filter(|e| !["date", "age_over_89"].contains(e))
            .collect();
        assert_eq!(defaults, expected);
    }

    fn run(stage: &Redact, text: &str) -> Item {
        let mut fields = Map::new();
        fields.insert("text".into(), json!(text));
        let mut item = Item::new("t".into(), "t".into(), b"", fields);
        let mut worker = stage.start(&StartContext::detached(&[])).unwrap();
        let results = worker.process(std::slice::from_mut(&mut item));
        assert!(results[0].is_ok());
        item
    }

    // A number after its word is what the word says: a fax is no phone, an id no card, and only
    // the value goes, not the label.
    #[test]
    fn context_words_name_the_number() {
        let item = run(
            &stage(Operator::Tag),
            "Tel. +44 20 7946 0958, Fax: +44 20 7946 0959, IMEI 490154203237518, MRN: 48213377, NHS No. 943 476 5919.",
        );
        assert_eq!(
            item.fields["text"],
            "Tel. [PHONE], Fax: [FAX], IMEI [DEVICE_ID], MRN: [MEDICAL_RECORD], NHS No. [NHS_NUMBER]."
        );
    }

    // Tags replace values; the summary has offsets and counts but no values.
    #[test]
    fn tags_and_summary() {
        let item = run(
            &stage(Operator::Tag),
            "Mail bob@example.com or call +1 415 555 0100.",
        );
        assert_eq!(item.fields["text"], "Mail [EMAIL] or call [PHONE].");
        let summary = item.fields["redactions"].to_string();
        assert!(!summary.contains("bob@"));
        assert_eq!(item.fields["redactions"]["spans"][0]["start"], 5);
        assert_eq!(item.fields["redactions"]["by_entity"]["email"], 1);
    }

    // Offsets point at the replacement in the redacted text, so they never tell how long the
    // removed value was: two emails of different lengths give the same summary.
    #[test]
    fn summary_hides_value_lengths() {
        let s = stage(Operator::Tag);
        let short = run(&s, "Mail a@b.io and call +1 415 555 0100.");
        let long = run(
            &s,
            "Mail bartholomew.long@example.com and call +1 415 555 0100.",
        );
        assert_eq!(short.fields["redactions"], long.fields["redactions"]);
        let text = short.fields["text"].as_str().unwrap();
        let span = &short.fields["redactions"]["spans"][1];
        let (start, end) = (
            span["start"].as_u64().unwrap(),
            span["end"].as_u64().unwrap(),
        );
        let replaced: String = text
            .chars()
            .skip(start as usize)
            .take((end - start) as usize)
            .collect();
        assert_eq!(replaced, "[PHONE]");
    }

    // The same value hashes to the same pseudonym; different values differ.
    #[test]
    fn hash_is_consistent() {
        let s = stage(Operator::Hash);
        let a = run(&s, "a@x.org a@x.org b@x.org");
        let words: Vec<&str> = a.fields["text"].as_str().unwrap().split(' ').collect();
        assert_eq!(words[0], words[1]);
        assert_ne!(words[1], words[2]);
    }

    // Masking keeps the length in characters, also for non-ASCII neighbours.
    #[test]
    fn mask_keeps_length() {
        let item = run(&stage(Operator::Mask('#', 0)), "é 10.0.0.1");
        assert_eq!(item.fields["text"], "é ########");
        assert_eq!(item.fields["redactions"]["spans"][0]["start"], 2);
    }

    // Each entity gets its own operator; allowed values and `keep` entities stay as written.
    #[test]
    fn operators_per_entity() {
        let mut s = stage(Operator::Tag);
        s.operators = vec![
            ("phone".into(), Operator::Mask('*', 4)),
            ("date_of_birth".into(), Operator::Year),
            ("email".into(), Operator::Replace("[E]".into())),
            ("url".into(), Operator::Keep),
        ];
        s.allow = vec!["help@example.com".into()];
        let item = run(
            &s,
            "Mail jane@x.org or Help@Example.com, call +44 20 7946 0958, DOB 12/03/1984, see https://x.org, card 4111 1111 1111 1111",
        );
        assert_eq!(
            item.fields["text"],
            "Mail [E] or Help@Example.com, call ************0958, DOB 1984, see https://x.org, card [CREDIT_CARD]"
        );
        assert_eq!(item.fields["redactions"]["spans"].as_array().unwrap().len(), 4);
    }

    // Operators as pipeline files spell them; anything else is refused.
    #[test]
    fn operator_spellings() {
        let parse = |s: &str| parse_operator(s, '#');
        assert!(matches!(parse("mask:4"), Some(Operator::Mask('#', 4))));
        assert!(matches!(parse("replace:[ID]"), Some(Operator::Replace(t)) if t == "[ID]"));
        assert!(matches!(parse("year"), Some(Operator::Year)));
        assert!(matches!(parse("hash"), Some(Operator::Hash)));
        assert!(matches!(parse("vault"), Some(Operator::Vault)));
        for bad in ["mask:x", "replace", "yearly", "tag:1", ""] {
            assert!(parse(bad).is_none(), "{bad}");
        }
        assert_eq!(year_of("March 3, 1984"), Some("1984"));
        assert_eq!(year_of("03-12-84"), None);
    }
}
