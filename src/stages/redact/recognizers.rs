//! Rule-based PII recognizers: a regex finds candidates, a checksum, shape or context rule
//! confirms them.
//!
//! Each built-in entity (the `entities!` table below says what each finds and checks) is one or
//! more `Recognizer`s. A cheap byte prefilter skips texts that cannot contain the entity, the
//! regex proposes a span, the validator accepts, narrows or rejects it (Luhn for cards, mod-97
//! for IBANs, SSA rules for SSNs, each national id's own check, `std::net` parsing for IPv6), and
//! where the recognizer has a `Context`, a word just before the span must name it (a birth word
//! before a date, "MRN" before a medical record number). This module finds spans, as byte
//! ranges; it never rewrites text and never puts what it finds into errors or logs.

use std::ops::Range;

use regex::Regex;

/// Declares the built-in entities from one table: `BUILTIN` names them as pipeline files spell
/// them, `ENTITIES_DOC` says what each finds and what is checked (the `entities` option's docs,
/// which `lai stages` prints), so the two cannot disagree.
macro_rules! entities {
    ($($name:literal: $doc:literal,)*) => {
        /// The built-in entity names, from most to least specific: on a tie for the same text
        /// the earlier one wins (a national id that passes its check is that id; else a number
        /// a context word names is what the word says, a 15-digit number after IMEI a device
        /// id, not a card; an SSN-shaped number is an SSN, not a phone).
        pub const BUILTIN: &[&str] = &[$($name),*];

        /// One line per entity: what it finds and how it is validated.
        pub const ENTITIES_DOC: &str = concat!(
            "Built-in entity types to find; on a tie for the same text the earlier one below wins. ",
            "\"After\" a word: the word (any case) starts at most 48 bytes before the value, with ",
            "only a label's tail between them (number, no., nr., n°, id, is, #, :); only the value ",
            "is redacted.",
            $("\n", $name, ": ", $doc),*
        );
    };
}

entities! {
    "email": "name@domain with a dotted domain.",
    "url": "http://, https://, ftp:// or www. up to a space; closing punctuation left out.",
    "it_codice_fiscale": "Italian codice fiscale: 16 capitals in its letter and digit places (omocodia letters allowed), the last the check letter from the odd and even tables.",
    "fr_nir": "French NIR (INSEE number): sex 1, 2, 7 or 8, year, month 01-12, 20-42 or 50-99, département (2A, 2B for Corsica), commune, order, key = 97 - (first 13 digits mod 97); 15 characters, spaces allowed.",
    "uk_nino": "UK National Insurance number: 2 capitals (neither D, F, I, Q, U, V; the second not O; not BG, GB, KN, NK, NT, TN, ZZ), 6 digits, A-D; spaces allowed. After National Insurance, NI or NINO: any 2 capitals, 6 digits and a capital (test and temporary numbers too).",
    "es_dni": "Spanish DNI (8 digits) or NIE (X, Y or Z and 7 digits), then the letter of the number mod 23 (TRWAGMYFPDXBNJZSQVHLCKE).",
    "de_tax_id": "German Steuer-ID: 11 digits, the first not 0, spaces allowed: in the first 10 one digit twice or three times (not three in a row), the others at most once; ISO 7064 MOD 11,10 check digit.",
    "us_itin": "US ITIN 9XX-XX-XXXX, one kind of separator: the middle 50-65, 70-88, 90-92 or 94-99.",
    "nhs_number": "UK NHS number after NHS: 10 digits (3-3-4 or together), mod-11 check digit (weights 10 to 2; a check of 10 is no number).",
    "nl_bsn": "Dutch BSN after BSN, burgerservicenummer or sofinummer: 9 digits passing the 11-proef (weights 9 to 2 and -1).",
    "ca_sin": "Canadian SIN after SIN, social insurance number or NAS: 9 digits (3-3-3 or together), the first not 0 or 8, Luhn.",
    "medical_record": "after MRN, medical record, patient ID, chart no., hospital no. (de Patientennummer, Fallnummer; fr numéro de dossier, IPP; nl patiëntnummer; es historia clínica, NHC): an id of 4-24 letters and digits, 3+ of them digits, not a date.",
    "health_plan": "after member ID, subscriber ID, insurance, policy or group no., health plan ID, Medicare, Medicaid, MBI (de Versichertennummer; fr numéro d'adhérent, d'assuré; nl polisnummer; es número de póliza, de afiliación): an id of 5-24 letters and digits, 3+ digits, not a date; a Medicare MBI written 1EG4-TE5-MK73 (its letters and digits in their places) anywhere.",
    "account_number": "after account, acct, a/c (de Kontonummer, Konto; fr numéro de compte; nl rekeningnummer; es número de cuenta): 6-24 letters and digits, 6+ digits, not a date nor a valid IBAN.",
    "license_number": "after licence, license, driver's licence, certificate (de Führerschein; fr permis de conduire; nl rijbewijs; es permiso de conducir, número de colegiado): an id of 5-24 letters and digits, 3+ digits, not a date; after DEA: 2 letters and 7 digits with the DEA check digit; after NPI: 10 digits passing Luhn with the 80840 prefix.",
    "vehicle_id": "a VIN, 17 capitals and digits without I, O, Q, both kinds, with the North American check digit (position 9, 0-9 or X); any such 17 characters after VIN, chassis no., Fahrgestellnummer, FIN, numéro de châssis, chassisnummer, número de bastidor; after plate, registration, reg, Kennzeichen, immatriculation, kenteken, matrícula: a plate of 4-10 capitals and digits, both kinds, in up to 4 groups.",
    "device_id": "after serial no., S/N, device ID, UDI (de Seriennummer; fr numéro de série; nl serienummer; es número de serie): an id of 5-24 letters and digits, 2+ digits, not a date; after IMEI: 15 digits passing Luhn; a GS1 UDI anywhere: (01) and a 14-digit GTIN with its check digit, then (AI)value parts.",
    "passport": "after passport, Reisepass, passeport, paspoort, pasaporte: 6-9 capitals and digits, 5+ digits.",
    "fax": "a phone number (as phone) after fax, Telefax or télécopie.",
    "credit_card": "13-19 digits in groups passing Luhn; not the account number inside an IBAN.",
    "iban": "country, check digits and up to 30 letters and digits: the country's length (SWIFT registry) and mod-97.",
    "ssn": "US SSN AAA-GG-SSSS, one kind of separator: area not 000, 666 or 9XX, group and serial not 0.",
    "date_of_birth": "a real calendar date (ISO, 12/03/1984, 12.03.1984, 3 March 1984, March 3, 1984, with or without weekday; en, de, fr, nl, es months) that a birth word (born, DOB, date of birth, geb., né le, geboortedatum, fecha de nacimiento, ...) names at most 48 bytes before it, in the same sentence, with no other number between; other dates are kept.",
    "date": "every real calendar date, as date_of_birth without the birth word.",
    "age_over_89": "an age of 90-130 (93-year-old, aged 91, age: 104): its number.",
    "ip_address": "IPv4 (not part of a longer dotted number) and IPv6 (parsed).",
    "phone": "+CC and 8-15 digits; North American (555) 123-4567 or 555-123-4567; national with a trunk 0 (030/1234567, (0141) 496 0641) and 9-12 digits; not the tail of a run of digit groups.",
}

/// Confirms a regex match: returns the span to redact (possibly narrowed) or `None`.
type Validator = fn(text: &str, span: Range<usize>) -> Option<Range<usize>>;

/// Finds one entity kind in text.
pub struct Recognizer {
    pub entity: String,
    regex: Regex,
    /// What a text must contain for a match to be possible; lets most texts skip the regex.
    needs: Needs,
    validate: Validator,
    /// Words that must name a match from just before it; `None`: the match stands alone.
    context: Option<Context>,
}

/// How far before a match its context word may start, in bytes.
const CONTEXT_BYTES: usize = 48;

/// Words that say what the match after them is ("DOB", "MRN", "fax"): one must start at most
/// `CONTEXT_BYTES` before the match, in the same sentence, with only `between` between them.
struct Context {
    /// The words, in any case, each at the start of a word.
    words: Regex,
    between: Between,
}

/// What may stand between a context word and the match it names.
#[derive(Clone, Copy)]
enum Between {
    /// Other words of the same sentence but no number: "born in Leeds on 3 March 1984".
    Words,
    /// Only a label's tail (`number`, `no.`, `nr.`, `n°`, `#`, `:`, `is`): "MRN: 48213377",
    /// "Member ID no. X1234".
    Label,
}

/// Words that may end a label between its word and its value (lower case): "account *no.*",
/// "MRN *is*", "Fax*nummer*".
const LABEL_TAILS: &[&str] = &[
    "number", "numbers", "no", "no.", "nos.", "nr", "nr.", "num", "num.", "n°", "nº", "núm.",
    "id", "is", "nummer", "numéro", "numero", "número", "code", "to", "on", "at",
];

/// A recognizer's prefilter.
#[derive(Clone, Copy)]
enum Needs {
    Nothing,
    /// At least one of these bytes.
    AnyByte(&'static [u8]),
    /// At least one of these substrings.
    AnyOf(&'static [&'static str]),
}

/// Which byte values occur in a text; computed once per text and shared by all recognizers.
pub struct BytesPresent([bool; 256]);

impl BytesPresent {
    pub fn of(text: &str) -> Self {
        let mut present = [false; 256];
        for &b in text.as_bytes() {
            present[usize::from(b)] = true;
        }
        BytesPresent(present)
    }
}

/// A found entity: byte range in the text and the recognizer's entity name.
#[derive(Clone, Debug, PartialEq)]
pub struct Found {
    pub span: Range<usize>,
    pub entity: usize,
}

impl Recognizer {
    /// A recognizer for a user's own regex (no validator, no prefilter).
    pub fn custom(entity: &str, pattern: &str) -> Result<Recognizer, regex::Error> {
        Ok(Recognizer {
            entity: entity.to_string(),
            regex: Regex::new(pattern)?,
            needs: Needs::Nothing,
            validate: |_, span| (!span.is_empty()).then_some(span),
            context: None,
        })
    }

    /// A recognizer for a deny-list: whole-word, case-insensitive matches of the given values.
    pub fn deny_list(entity: &str, values: &[String]) -> Result<Recognizer, regex::Error> {
        let mut values: Vec<&str> = values
            .iter()
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .collect();
        // Longest first, so "Acme Bank" wins over "Acme" at the same position.
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        let alternatives: Vec<String> = values.iter().map(|v| regex::escape(v)).collect();
        let pattern = if alternatives.is_empty() {
            // Matches nothing: an empty list is allowed and harmless.
            r"[^\s\S]".to_string()
        } else {
            format!("(?i)(?:{})", alternatives.join("|"))
        };
        Ok(Recognizer {
            entity: entity.to_string(),
            regex: Regex::new(&pattern)?,
            needs: Needs::Nothing,
            validate: |text, span| standalone(text, &span).then_some(span),
            context: None,
        })
    }

    /// Appends every confirmed match in `text` to `out`, tagged with `entity_index`.
    pub fn find_into(
        &self,
        text: &str,
        present: &BytesPresent,
        entity_index: usize,
        out: &mut Vec<Found>,
    ) {
        let possible = match self.needs {
            Needs::Nothing => true,
            Needs::AnyByte(bytes) => bytes.iter().any(|&b| present.0[usize::from(b)]),
            Needs::AnyOf(needles) => needles.iter().any(|n| text.contains(n)),
        };
        if !possible {
            return;
        }
        // Where the context words are, in text order; without one, no match can count. Words
        // come first: a scan for them is cheaper than one for values, and most texts have none.
        let words: Vec<Range<usize>> = match &self.context {
            None => Vec::new(),
            Some(context) => context.words.find_iter(text).map(|m| m.range()).collect(),
        };
        if self.context.is_some() && words.is_empty() {
            return;
        }
        for m in self.regex.find_iter(text) {
            let Some(span) = (self.validate)(text, m.range()) else {
                continue;
            };
            if let Some(context) = &self.context
                && !context.names(text, &words, span.start)
            {
                continue;
            }
            out.push(Found {
                span,
                entity: entity_index,
            });
        }
    }

    /// The same recognizer, but only for matches that one of `words` names from just before
    /// them (see `Context`).
    fn after(self, words: &[&str], between: Between) -> Recognizer {
        let mut words = words.to_vec();
        // Longest first, so "medical record number" wins over "medical record" where both fit.
        words.sort_by_key(|w| std::cmp::Reverse(w.len()));
        let alternatives: Vec<String> = words
            .iter()
            .map(|w| regex::escape(w).replace(' ', r"\s+").replace('\'', "['’]"))
            .collect();
        let pattern = format!(r"(?i)\b(?:{})", alternatives.join("|"));
        Recognizer {
            context: Some(Context {
                words: Regex::new(&pattern).expect("context words compile. This is a bug."),
                between,
            }),
            ..self
        }
    }
}

impl Context {
    /// Whether the last context word in `words` (this context's matches in `text`, in order)
    /// before `start` names what starts there.
    fn names(&self, text: &str, words: &[Range<usize>], start: usize) -> bool {
        let before = words.partition_point(|w| w.end <= start);
        let Some(word) = before.checked_sub(1).map(|i| &words[i]) else {
            return false;
        };
        if word.start + CONTEXT_BYTES < start {
            return false;
        }
        // Punctuation right after the word (`DOB.:`, `born)`, `No.`) is part of it.
        let between = text[word.end..start].trim_start_matches(['.', ':', ')', ',']);
        match self.between {
            Between::Words => {
                !between.contains(|c: char| {
                    c.is_ascii_digit() || matches!(c, ';' | '!' | '?' | '\n')
                }) && !between.trim_end().ends_with('.')
                    && !between.contains(". ")
            }
            Between::Label => between.split_whitespace().all(|token| {
                let token = token.trim_matches([':', '#', '(', ')', '=', '-', ',']);
                token.is_empty() || LABEL_TAILS.contains(&token.to_lowercase().as_str())
            }),
        }
    }
}

/// Recognizers for one built-in entity name.
pub fn builtin(entity: &str) -> Vec<Recognizer> {
    let make = |pattern: &str, needs: Needs, validate: Validator| Recognizer {
        entity: entity.to_string(),
        regex: Regex::new(pattern).expect("built-in patterns compile. This is a bug."),
        needs,
        validate,
        context: None,
    };
    const DIGITS: Needs = Needs::AnyByte(b"0123456789");
    // Phone numbers; `fax` finds them after its word.
    let phones = || {
        vec![
            // International: +CC then groups.
            make(
                &format!(r"\+\d{{1,3}}(?:[ .\-]?\(?\d{{1,5}}\)?){{1,6}}{EXTENSION}\b"),
                Needs::AnyByte(b"+"),
                |text, span| phone_digits(text, span, 8, 15),
            ),
            // International with the 00 prefix, in groups: 0044 20 7946 0958, 001-305-660-8725.
            make(
                &format!(r"\b00[1-9]\d{{0,2}}(?:[ .\-]\(?\d{{1,5}}\)?){{2,6}}{EXTENSION}\b"),
                DIGITS,
                |text, span| {
                    // Groups of four throughout are an order or card number: 0070 1496 8020 2712.
                    let groups = digit_groups(text, &span);
                    let fours = groups.len() >= 3 && groups.iter().all(|g| g.len() == 4);
                    phone_digits(text, span, 10, 17).filter(|_| !fours)
                },
            ),
            // North American: (555) 123-4567, (555)123-4567, 555-123-4567, 555.123.4567,
            // 1-555-123-4567, with an extension (x123, ext. 45).
            make(
                &format!(r"(?:\b1[ .\-])?(?:\(\d{{3}}\) ?|\b\d{{3}}[ .\-])\d{{3}}[ .\-]\d{{4}}{EXTENSION}\b"),
                DIGITS,
                |text, span| phone_digits(text, span, 10, 11),
            ),
            // Ten digits in one run, only after a phone word: "call 4155550123".
            make(r"\b[2-9]\d{2}[2-9]\d{6}\b", DIGITS, |text, span| {
                phone_digits(text, span, 10, 10)
            })
            .after(PHONE_WORDS, Between::Words),
            // National with trunk 0: 020 7946 0958, 07700 900123, 030/1234567, 01 23 45 67 89,
            // (0141) 496 0641, (040)-6676260.
            make(
                r"(?:\(0\d{1,4}\)[ \-/]?|\b0\d{1,4}(?:/|[ \-])?)\d{2,8}(?:[ \-]\d{2,8}){0,3}\b",
                DIGITS,
                |text, span| phone_digits(text, span, 9, 12),
            ),
        ]
    };
    match entity {
        "email" => vec![make(
            r"(?i)[a-z0-9][a-z0-9._%+\-]*@[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?)*\.[a-z]{2,}\b",
            Needs::AnyByte(b"@"),
            |_, span| Some(span),
        )],
        "url" => vec![make(
            r#"(?i)\b(?:https?://|ftp://|www\.)[^\s<>"'`{}|\\^\[\]]+"#,
            Needs::AnyOf(&["://", "www.", "WWW."]),
            trim_url,
        )],
        "ip_address" => vec![
            make(
                r"\b(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\b",
                Needs::AnyByte(b"."),
                ipv4_standalone,
            ),
            make(
                r"(?i)[0-9a-f.:]*:[0-9a-f.:]*:[0-9a-f.:]*",
                Needs::AnyByte(b":"),
                ipv6,
            ),
        ],
        "credit_card" => vec![make(
            r"\b\d{3,19}(?:[ \-]\d{3,19}){0,5}\b",
            DIGITS,
            credit_card,
        )],
        "iban" => vec![make(
            r"(?i)\b[a-z]{2}\d{2}(?: ?[a-z0-9]{1,4}){3,8}\b",
            DIGITS,
            iban,
        )],
        "ssn" => vec![make(r"\b\d{3}([\- ])\d{2}([\- ])\d{4}\b", DIGITS, ssn)],
        "it_codice_fiscale" => vec![make(
            r"\b[A-Z]{6}[0-9LMNPQRSTUV]{2}[ABCDEHLMPRST][0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{3}[A-Z]\b",
            Needs::Nothing,
            it_codice_fiscale,
        )],
        "fr_nir" => vec![make(
            r"\b[1278] ?\d{2} ?\d{2} ?(?:\d{2}|2[AB]) ?\d{3} ?\d{3} ?\d{2}\b",
            DIGITS,
            fr_nir,
        )],
        "uk_nino" => vec![
            make(r"\b[A-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b", DIGITS, uk_nino),
            // After its word, any two letters, six digits and a letter: test and temporary
            // numbers (ZZ..., suffixes past D) name a person as much as allocated ones.
            make(r"\b[A-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-Z]?\b", DIGITS, |_, span| Some(span))
                .after(NINO_WORDS, Between::Label),
        ],
        "es_dni" => vec![make(r"\b(?:\d{8}|[XYZ]-?\d{7})-?[A-Z]\b", DIGITS, es_dni)],
        "de_tax_id" => vec![make(r"\b[1-9]\d(?: ?\d{3}){3}\b", DIGITS, de_tax_id)],
        "us_itin" => vec![make(r"\b9\d{2}[\- ]\d{2}[\- ]\d{4}\b", DIGITS, us_itin)],
        // Digits alone, with a weak check (1 in 11 or 10 random numbers pass): only after a word.
        "nhs_number" => vec![
            make(r"\b\d{3}[ \-]?\d{3}[ \-]?\d{4}\b", DIGITS, nhs_number)
                .after(NHS_WORDS, Between::Label),
        ],
        "nl_bsn" => vec![
            make(r"\b(?:\d{4}\.\d{2}\.\d{3}|\d{3}[ .]?\d{3}[ .]?\d{3})\b", DIGITS, nl_bsn)
                .after(BSN_WORDS, Between::Label),
        ],
        "ca_sin" => vec![
            make(r"\b\d{3}[ \-]?\d{3}[ \-]?\d{3}\b", DIGITS, ca_sin)
                .after(SIN_WORDS, Between::Label),
        ],
        "date_of_birth" => {
            vec![make(&date_pattern(), DIGITS, calendar_date).after(BIRTH_WORDS, Between::Words)]
        }
        "date" => vec![make(&date_pattern(), DIGITS, calendar_date)],
        "age_over_89" => vec![make(
            r"(?i)\b(?:age[ds]?:?\s*|aged\s+)(\d{2,3})\b|\b(\d{2,3})(?:[ \-]years?[ \-]old\b|\s*y/?o\b|\s+yrs?\b)",
            DIGITS,
            age_over_89,
        )],
        "medical_record" => vec![
            make(ID_VALUE, DIGITS, |text, span| id_value(text, span, 4, 3))
                .after(MEDICAL_RECORD_WORDS, Between::Label),
        ],
        "health_plan" => vec![
            make(ID_VALUE, DIGITS, |text, span| id_value(text, span, 5, 3))
                .after(HEALTH_PLAN_WORDS, Between::Label),
            // A Medicare Beneficiary Identifier: its shape is its check.
            make(
                r"\b[1-9][AC-HJKMNP-RT-Y][AC-HJKMNP-RT-Y0-9]\d-[AC-HJKMNP-RT-Y][AC-HJKMNP-RT-Y0-9]\d-[AC-HJKMNP-RT-Y]{2}\d{2}\b",
                Needs::AnyByte(b"-"),
                |_, span| Some(span),
            ),
        ],
        "account_number" => vec![
            make(ID_VALUE, DIGITS, account_number).after(ACCOUNT_WORDS, Between::Label),
        ],
        "license_number" => vec![
            make(ID_VALUE, DIGITS, |text, span| id_value(text, span, 5, 3))
                .after(LICENSE_WORDS, Between::Label),
            make(r"\b[A-Z][A-Z9]\d{7}\b", DIGITS, dea_number).after(&["dea"], Between::Label),
            make(r"\b[12]\d{9}\b", DIGITS, npi).after(NPI_WORDS, Between::Label),
        ],
        "vehicle_id" => vec![
            make(VIN, DIGITS, vin),
            make(VIN, DIGITS, |text, span| {
                text[span.clone()].bytes().any(|b| b.is_ascii_digit()).then_some(span)
            })
            .after(VIN_WORDS, Between::Label),
            make(
                r"\b[A-ZÄÖÜ0-9]{1,8}(?:[ \-][A-ZÄÖÜ0-9]{1,8}){0,3}\b",
                DIGITS,
                licence_plate,
            )
            .after(PLATE_WORDS, Between::Label),
        ],
        "device_id" => vec![
            make(ID_VALUE, DIGITS, |text, span| id_value(text, span, 5, 2))
                .after(DEVICE_WORDS, Between::Label),
            make(r"\b\d{2}[ \-]?\d{6}[ \-]?\d{6}[ \-]?\d\b", DIGITS, |text, span| {
                let digits: String = text[span.clone()].chars().filter(char::is_ascii_digit).collect();
                luhn(&digits).then_some(span)
            })
            .after(&["imei"], Between::Label),
            make(
                r"\(01\)\d{14}(?:\(\d{2,4}\)[0-9A-Za-z\-./]+)*",
                Needs::AnyOf(&["(01)"]),
                gs1_udi,
            ),
        ],
        "passport" => vec![
            make(r"\b[A-Z0-9]{6,9}\b", DIGITS, |text, span| {
                let digits = text[span.clone()].bytes().filter(u8::is_ascii_digit).count();
                (digits >= 5).then_some(span)
            })
            .after(PASSPORT_WORDS, Between::Label),
        ],
        "fax" => phones()
            .into_iter()
            .map(|r| r.after(FAX_WORDS, Between::Label))
            .collect(),
        "phone" => phones(),
        other => panic!("`{other}` is not a built-in entity. This is a bug."),
    }
}

/// A phone number's extension: x123, ext. 45, #12.
const EXTENSION: &str = r"(?:\s?(?:x|ext\.?|#)\s?\d{1,6})?";

/// Words before a phone number written as one run of digits.
const PHONE_WORDS: &[&str] = &[
    "phone", "tel", "tel.", "telephone", "call", "mobile", "cell", "contact", "reach", "reached",
    "text", "ring", "dial", "telefon", "handy", "rufnummer", "téléphone", "portable", "joindre",
    "telefoon", "mobiel", "bellen", "bereikbaar", "teléfono", "móvil", "llamar", "telefono",
    "cellulare",
];

/// An id as forms write it after its label: letters and digits joined by `-`, `.` or `/`, a
/// digit among them (`PT-778812`, `A1234567`), or groups of digits joined by single spaces
/// (`004 512 33`).
const ID_VALUE: &str = r"\b(?:\d{1,6}(?: \d{1,6})+|(?:[A-Za-z0-9]+[\-./])*[A-Za-z]*\d[A-Za-z0-9]*(?:[\-./][A-Za-z0-9]+)*)\b";

/// A VIN's shape: 17 capitals and digits, I, O and Q left out.
const VIN: &str = r"\b[A-HJ-NPR-Z0-9]{17}\b";


/// Text the rules looked at and found to be no PII: numbers shaped like a card that fail Luhn,
/// IBAN-shaped strings that fail mod-97, and shapes that are never personal (ticket ids like
/// `INC-2024-000123`, versions, amounts, clock times). The NER model does not get to redact
/// these: it sees digits, not checksums. A national id that fails its check is no veto: the
/// shapes are too plain to tell from other ids without their word, and beside its word it is
/// more likely a mistyped real id than no id, so the model may still take it.
pub struct Vetoes {
    shapes: Vec<(Regex, Check)>,
}

/// Whether a match of a veto's shape is no PII.
type Check = fn(&str) -> bool;

impl Default for Vetoes {
    fn default() -> Self {
        let card_failing_luhn: Check = |s| {
            let digits: String = s.chars().filter(char::is_ascii_digit).collect();
            (13..=19).contains(&digits.len()) && !luhn(&digits)
        };
        let iban_failing: Check = |s| {
            let compact: String = s.chars().filter(|c| *c != ' ').collect();
            !iban_valid(&compact)
        };
        let always: Check = |_| true;
        let shapes = [
            (r"\b\d{4}(?:[ \-]?\d{4}){2}[ \-]?\d{1,7}\b", card_failing_luhn),
            (r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){3,7}(?: ?[A-Z0-9]{1,3})?\b", iban_failing),
            (r"\b[A-Z]{2,8}-\d{2,}(?:-\d+)*\b", always),
            (r"\bv?\d+\.\d+\.\d+(?:[.\-][0-9A-Za-z]+)*\b", always),
            (r"(?:[$€£¥]\s?\d[\d,. ]*\d|\b\d[\d,.]*\s?(?:EUR|USD|GBP|CHF)\b)", always),
            (r"\b\d{1,2}:\d{2}(?::\d{2})?(?:\s?[ap]\.?m\.?)?\b", always),
        ];
        Vetoes {
            shapes: shapes
                .into_iter()
                .map(|(p, check)| {
                    let regex = Regex::new(p).expect("veto patterns compile. This is a bug.");
                    (regex, check)
                })
                .collect(),
        }
    }
}

impl Vetoes {
    /// The byte ranges of `text` that are no PII by the rules.
    pub fn find(&self, text: &str) -> Vec<Range<usize>> {
        if !text.bytes().any(|b| b.is_ascii_digit()) {
            return Vec::new();
        }
        self.shapes
            .iter()
            .flat_map(|(regex, check)| {
                regex
                    .find_iter(text)
                    .filter(|m| check(m.as_str()))
                    .map(|m| m.range())
            })
            .collect()
    }
}

/// True if the span is not glued to letters or digits on either side.
fn standalone(text: &str, span: &Range<usize>) -> bool {
    let before = text[..span.start].chars().next_back();
    let after = text[span.end..].chars().next();
    !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
        && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
}

fn trim_url(text: &str, span: Range<usize>) -> Option<Range<usize>> {
    let mut url = &text[span.clone()];
    loop {
        let trimmed = url.trim_end_matches(['.', ',', ';', ':', '!', '?', '\'', '"']);
        let trimmed = if trimmed.ends_with(')') && !trimmed.contains('(') {
            &trimmed[..trimmed.len() - 1]
        } else {
            trimmed
        };
        if trimmed.len() == url.len() {
            break;
        }
        url = trimmed;
    }
    (url.len() > 4).then(|| span.start..span.start + url.len())
}

/// Rejects version-like runs such as 1.2.3.4.5 where the match is part of a longer dotted number.
fn ipv4_standalone(text: &str, span: Range<usize>) -> Option<Range<usize>> {
    let before = &text.as_bytes()[..span.start];
    let after = &text.as_bytes()[span.end..];
    let dotted_before = before.len() >= 2
        && before[before.len() - 1] == b'.'
        && before[before.len() - 2].is_ascii_digit();
    let dotted_after = after.len() >= 2 && after[0] == b'.' && after[1].is_ascii_digit();
    (!dotted_before && !dotted_after).then_some(span)
}

fn ipv6(text: &str, span: Range<usize>) -> Option<Range<usize>> {
    let candidate = text[span.clone()].trim_end_matches('.');
    let end = span.start + candidate.len();
    let span = span.start..end;
    if !candidate.bytes().any(|b| b.is_ascii_hexdigit()) || !standalone(text, &span) {
        return None;
    }
    candidate.parse::<std::net::Ipv6Addr>().ok().map(|_| span)
}

/// Finds the longest run of digit groups inside the match that is 13-19 digits and passes
/// Luhn, so "order 12 4111 1111 1111 1111" still yields the card.
fn credit_card(text: &str, span: Range<usize>) -> Option<Range<usize>> {
    let groups = digit_groups(text, &span);
    let mut best: Option<Range<usize>> = None;
    for first in 0..groups.len() {
        for last in first..groups.len() {
            let digits: String = groups[first..=last]
                .iter()
                .map(|g| &text[g.clone()])
                .collect();
            let lengths: Vec<usize> = groups[first..=last].iter().map(|g| g.len()).collect();
            if !(13..=19).contains(&digits.len()) || !card_groups(&lengths) || !luhn(&digits) {
                continue;
            }
            let candidate = groups[first].start..groups[last].end;
            if best.as_ref().is_none_or(|b| candidate.len() > b.len()) {
                best = Some(candidate);
            }
        }
    }
    // Digits inside an IBAN-shaped string ("DE10 1503 4980 ...") are its account number.
    let in_iban = |start: usize| {
        let head = text[..start].trim_end_matches([' ', '-']);
        let tail: Vec<char> = head.chars().rev().take(5).collect();
        tail.len() >= 4
            && tail[..2].iter().all(char::is_ascii_digit)
            && tail[2..4].iter().all(char::is_ascii_uppercase)
            && tail.get(4).is_none_or(|c| !c.is_alphanumeric())
    };
    best.filter(|b| !in_iban(b.start))
}

/// Whether digit groups of these lengths are written like a card number: one run, fours with a
/// shorter last group (4-4-4-4, 4-4-4-4-3), or 4-6-5 and 4-6-4 (American Express, Diners).
/// A 001-305-660-8725 that happens to pass Luhn is a phone number.
fn card_groups(lengths: &[usize]) -> bool {
    match lengths {
        [_] | [4, 6, 5] | [4, 6, 4] => true,
        [init @ .., last] => init.iter().all(|&n| n == 4) && (1..=4).contains(last),
        [] => false,
    }
}

/// Byte ranges of the maximal digit runs inside `span`.
fn digit_groups(text: &str, span: &Range<usize>) -> Vec<Range<usize>> {
    let bytes = text.as_bytes();
    let mut groups = Vec::new();
    let mut i = span.start;
    while i < span.end {
        if bytes[i].is_ascii_digit() {
            let start = i;
            while i < span.end && bytes[i].is_ascii_digit() {
                i += 1;
            }
            groups.push(start..i);
        } else {
            i += 1;
        }
    }
    groups
}

pub fn luhn(digits: &str) -> bool {
    let mut sum = 0;
    for (i, b) in digits.bytes().rev().enumerate() {
        let mut d = u32::from(b - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum % 10 == 0
}

/// Accepts the longest prefix of space-separated groups that is a valid IBAN, so words after
/// an IBAN ("... 00 BANK") do not hide it.
fn iban(text: &str, span: Range<usize>) -> Option<Range<usize>> {
    let matched = &text[span.clone()];
    let mut ends: Vec<usize> = matched.match_indices(' ').map(|(i, _)| i).collect();
    ends.push(matched.len());
    ends.into_iter().rev().find_map(|end| {
        let compact: String = matched[..end].chars().filter(|c| *c != ' ').collect();
        iban_valid(&compact).then(|| span.start..span.start + end)
    })
}

/// IBAN lengths by country (the SWIFT IBAN registry); another country's IBAN may be 15-34
/// characters long.
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24), ("AE", 23), ("AL", 28), ("AT", 20), ("AZ", 28), ("BA", 20), ("BE", 16),
    ("BG", 22), ("BH", 22), ("BR", 29), ("BY", 28), ("CH", 21), ("CR", 22), ("CY", 28),
    ("CZ", 24), ("DE", 22), ("DK", 18), ("DO", 28), ("EE", 20), ("EG", 29), ("ES", 24),
    ("FI", 18), ("FO", 18), ("FR", 27), ("GB", 22), ("GE", 22), ("GI", 23), ("GL", 18),
    ("GR", 27), ("GT", 28), ("HR", 21), ("HU", 28), ("IE", 22), ("IL", 23), ("IQ", 23),
    ("IS", 26), ("IT", 27), ("JO", 30), ("KW", 30), ("KZ", 20), ("LB", 28), ("LC", 32),
    ("LI", 21), ("LT", 20), ("LU", 20), ("LV", 21), ("MC", 27), ("MD", 24), ("ME", 22),
    ("MK", 19), ("MR", 27), ("MT", 31), ("MU", 30), ("NL", 18), ("NO", 15), ("PK", 24),
    ("PL", 28), ("PS", 29), ("PT", 25), ("QA", 29), ("RO", 24), ("RS", 22), ("SA", 24),
    ("SC", 31), ("SE", 24), ("SI", 19), ("SK", 24), ("SM", 27), ("ST", 25), ("SV", 28),
    ("TL", 23), ("TN", 24), ("TR", 26), ("UA", 29), ("VA", 22), ("VG", 24), ("XK", 20),
];

pub fn iban_valid(compact: &str) -> bool {
    if !(15..=34).contains(&compact.len()) || !compact.is_ascii() {
        return false;
    }
    let country = compact[..2].to_ascii_uppercase();
    if let Some((_, len)) = IBAN_LENGTHS.iter().find(|(c, _)| *c == country)
        && compact.len() != *len
    {
        return false;
    }
    let upper = compact.to_ascii_uppercase();
    let (head, tail) = upper.split_at(4);
    let mut remainder: u32 = 0;
    for c in tail.chars().chain(head.chars()) {
        let value = match c {
            '0'..='9' => c as u32 - '0' as u32,
            'A'..='Z' => c as u32 - 'A' as u32 + 10,
            _ => return false,
        };
        let width = if value >= 10 { 100 } else { 10 };
        remainder = (remainder * width + value) % 97;
    }
    remainder == 1
}

/// US SSN: AAA-GG-SSSS with one separator kind, area not 000/666/9xx, group and serial not 0.
fn ssn(text: &str, span: Range<usize>) -> Option<Range<usize>> {
    let s = &text[span.clone()];
    let digits: String = s.chars().filter(char::is_ascii_digit).collect();
    let separators: Vec<char> = s.chars().filter(|c| !c.is_ascii_digit()).collect();
    let (area, rest) = digits.split_at(3);
    let (group, serial) = rest.split_at(2);
    let valid = separators.windows(2).all(|w| w[0] == w[1])
        && area != "000"
        && area != "666"
        && !area.starts_with('9')
        && group != "00"
        && serial != "0000";
    valid.then_some(span)
}

/// The digits of a match, separators left out.
fn digits_of(s: &str) -> Vec<u32> {
    s.bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| u32::from(b - b'0'))
        .collect()
}

/// Italian codice fiscale: the 16th character is the check letter of the first 15, which count
/// by one table in odd places (1st, 3rd, ...) and by another in even places.
fn it_codice_fiscale(text: &str, span: Range<usize>) -> Option<Range<usize>> {
    // Odd places: the value of 0-9, then of A-Z.
    const ODD: [u32; 36] = [
        1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3,
        6, 8, 12, 14, 16, 10, 22, 25, 24, 23,
    ];
    let code = text[span.clone()].as_bytes();
    let sum: u32 = code[..15]
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let (index, even) = match c {
                b'0'..=b'9' => (c - b'0', c - b'0'),
                _ => (c - b'A' + 10, c - b'A'),
            };
            if i % 2 == 0 {
                ODD[usize::from(index)]
            } else {
                u32::from(even)
            }
        })
        .sum();
    (u32::from(code[15] - b'A') == sum % 26).then_some(span)
}

/// French NIR: a month that exists (or one of the codes for an unknown month) and the key,
/// 97 - (the first 13 digits mod 97), where Corsica's 2A and 2B count as 19 and 18.
fn fr_nir(text: &str, span: Range<usize>) -> Option<Range<usize>> {
    let compact: String = text[span.clone()].chars().filter(|c| *c != ' ').collect();
    let month: u32 = compact[3..5].parse().ok()?;
    let body = match &compact[5..7] {
        "2A" => format!("{}19{}", &compact[..5], &compact[7..13]),
        "2B" => format!("{}18{}", &compact[..5], &compact[7..13]),
        _ => compact[..13].to_string(),
    };
    let body: u64 = body.parse().ok()?;
    let key: u64 = compact[13..].parse().ok()?;
    let valid = matches!(month, 1..=12 | 20..=42 | 50..=99) && key == 97 - body % 97;
    valid.then_some(span)
}

/// UK National Insurance number: prefixes HMRC never issues are no number.
fn uk_nino(text: &str, span: Range<usize>) -> Option<Range<usize>> {
    const NEVER: &[u8] = b"DFIQUV";
    const UNUSED: &[&[u8]] = &[b"BG", b"GB", b"KN", b"NK", b"NT", b"TN", b"ZZ"];
    let prefix = &text.as_bytes()[span.start..span.start + 2];
    let valid = !NEVER.contains(&prefix[0])
        && !NEVER.contains(&prefix[1])
        && prefix[1] != b'O'
        && !UNUSED.contains(&prefix);
    valid.then_some(span)
}

/// Spanish DNI or NIE: the letter is the number's (an NIE's X, Y, Z count as 0, 1, 2) mod 23
/// in the official table.
fn es_dni(text: &str, span: Range<usize>) -> Option<Range<usize>> {
    const LETTERS: &[u8; 23] = b"TRWAGMYFPDXBNJZSQVHLCKE";
    let compact: Vec<u8> = text[span.clone()].bytes().filter(|b| *b != b'-').collect();
    let (body, letter) = compact.split_at(compact.len() - 1);
    let number = body.iter().fold(0u32, |n, &c| {
        let digit = match c {
            b'X' => 0,
            b'Y' => 1,
            b'Z' => 2,
            _ => u32::from(c - b'0'),
        };
        n * 10 + digit
    });
    (LETTERS[(number % 23) as usize] == letter[0]).then_some(span)
}

/// German Steuer-ID: in the first ten digits exactly one digit repeats, two or three times
/// (three not in a row), and the eleventh is their ISO 7064 MOD 11,10 check digit.
fn de_tax_id(text: &str, span: Range<usize>) -> Option<Range<usize>> {
    let digits = digits_of(&text[span.clone()]);
    let (body, check) = digits.split_at(10);
    let mut counts = [0; 10];
    for &d in body {
        counts[d as usize] += 1;
    }
    let repeated: Vec<u32> = (0..10).filter(|&d| counts[d as usize] > 1).collect();
    let shape = match repeated[..] {
        [d] => match counts[d as usize] {
            2 => true,
            3 => !body.windows(3).any(|w| w.iter().all(|&x| x == d)),
            _ => false,
        },
        _ => false,
    };
    let mut product = 10;
    for &d in body {
        let sum = match (d + product) % 10 {
            0 => 10,
            sum => sum,
        };
        product = sum * 2 % 11;
    }
    (shape && check[0] == (11 - product) % 10).then_some(span)
}

/// US ITIN: one kind of separator and a middle group the IRS issues.
fn us_itin(text: &str, span: Range<usize>) -> Option<Range<usize>> {
    let s = &text[span.clone()];
    let group: u32 = s[4..6].parse().ok()?;
    let valid =
        s[3..4] == s[6..7] && matches!(group, 50..=65 | 70..=88 | 90..=92 | 94..=99);
    valid.then_some(span)
}

/// UK NHS number: the tenth digit is 11 - (the first nine weighted 10 to 2, mod 11), 11 read as
/// 0; a number whose check would be 10 is never issued.
fn nhs_number(text: &str, span: Range<usize>) -> Option<Range<usize>> {
    let digits = digits_of(&text[span.clone()]);
    let sum: u32 = digits[..9].iter().zip((2..=10).rev()).map(|(d, w)| d * w).sum();
    let check = match 11 - sum % 11 {
        11 => 0,
        10 => return None,
        check => check,
    };
    (digits[9] == check).then_some(span)
}

/// Dutch BSN, the 11-proef: the digits weighted 9 to 2 and the last -1 sum to a multiple of 11
/// (and not to 0).
fn nl_bsn(text: &str, span: Range<usize>) -> Option<Range<usize>> {
    let digits = digits_of(&text[span.clone()]);
    let weighted: u32 = digits[..8].iter().zip((2..=9).rev()).map(|(d, w)| d * w).sum();
    let sum = i64::from(weighted) - i64::from(digits[8]);
    (sum > 0 && sum % 11 == 0).then_some(span)
}

/// Canadian SIN: Luhn, and not a number starting with 0 (never issued) or 8 (business numbers).
fn ca_sin(text: &str, span: Range<usize>) -> Option<Range<usize>> {
    let digits: String = text[span.clone()].chars().filter(char::is_ascii_digit).collect();
    (!digits.starts_with(['0', '8']) && luhn(&digits)).then_some(span)
}

/// Words before a UK NHS number ("NHS no.", "NHS number:").
const NHS_WORDS: &[&str] = &["nhs", "national health service"];

/// Words before a UK National Insurance number.
const NINO_WORDS: &[&str] = &["national insurance", "ni", "nino", "nin"];

/// Words before a Dutch BSN.
const BSN_WORDS: &[&str] = &[
    "bsn",
    "burgerservicenummer",
    "sofinummer",
    "sofi-nummer",
    "citizen service number",
];

/// Words before a Canadian SIN (en, fr).
const SIN_WORDS: &[&str] = &[
    "sin",
    "social insurance",
    "assurance sociale",
    "nas",
];

/// An id after its label: `min_len` to 24 letters and digits, at least `min_digits` digits, and
/// no calendar date (`date` and `date_of_birth` judge those).
fn id_value(
    text: &str,
    span: Range<usize>,
    min_len: usize,
    min_digits: usize,
) -> Option<Range<usize>> {
    let value = &text[span.clone()];
    let len = value.bytes().filter(u8::is_ascii_alphanumeric).count();
    let digits = value.bytes().filter(u8::is_ascii_digit).count();
    let date = digits == len && is_calendar_date(value);
    ((min_len..=24).contains(&len) && digits >= min_digits && !date).then_some(span)
}

/// An account number after its word: 6 or more digits, and no IBAN (`iban` finds those).
fn account_number(text: &str, span: Range<usize>) -> Option<Range<usize>> {
    let span = id_value(text, span, 6, 6)?;
    let compact: String = text[span.clone()]
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let iban_shaped = compact.bytes().take(2).all(|b| b.is_ascii_alphabetic())
        && compact.bytes().skip(2).take(2).all(|b| b.is_ascii_digit());
    (!(iban_shaped && iban_valid(&compact))).then_some(span)
}

/// DEA registration number: the 7th digit is the last digit of the 1st, 3rd and 5th plus twice
/// the 2nd, 4th and 6th.
fn dea_number(text: &str, span: Range<usize>) -> Option<Range<usize>> {
    // The second letter may be a 9: the digits are the last seven.
    let d = digits_of(&text[span.end - 7..span.end]);
    let sum = d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5]);
    (sum % 10 == d[6]).then_some(span)
}

/// US National Provider Identifier: Luhn over the number with the card issuer prefix 80840.
fn npi(text: &str, span: Range<usize>) -> Option<Range<usize>> {
    luhn(&format!("80840{}", &text[span.clone()])).then_some(span)
}

/// A VIN with both letters and digits and the North American check digit in position 9: the
/// characters' values (letters transliterated) weighted 8, 7, ... 2, 10, 0, 9, ... 2, mod 11,
/// 10 written X.
fn vin(text: &str, span: Range<usize>) -> Option<Range<usize>> {
    const WEIGHTS: [u32; 17] = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2];
    let vin = text[span.clone()].as_bytes();
    let value = |c: u8| -> u32 {
        u32::from(match c {
            b'0'..=b'9' => c - b'0',
            b'A'..=b'H' => c - b'A' + 1,
            b'J'..=b'N' => c - b'J' + 1,
            b'P' => 7,
            b'R' => 9,
            _ => c - b'S' + 2,
        })
    };
    let sum: u32 = vin.iter().zip(WEIGHTS).map(|(&c, w)| value(c) * w).sum();
    let check = match sum % 11 {
        10 => b'X',
        n => b'0' + n as u8,
    };
    let mixed = vin.iter().any(u8::is_ascii_digit) && vin.iter().any(u8::is_ascii_uppercase);
    (mixed && vin[8] == check).then_some(span)
}

/// A licence plate after its word: the most groups that make 4 to 10 letters and digits, both
/// kinds (so a capitalised word after the plate is left out).
fn licence_plate(text: &str, span: Range<usize>) -> Option<Range<usize>> {
    let plate = &text[span.clone()];
    let mut ends: Vec<usize> = plate.match_indices([' ', '-']).map(|(i, _)| i).collect();
    ends.push(plate.len());
    ends.into_iter().rev().find_map(|end| {
        let groups = &plate[..end];
        let len = groups.chars().filter(|c| c.is_alphanumeric()).count();
        let digits = groups.chars().filter(char::is_ascii_digit).count();
        ((4..=10).contains(&len) && (1..len).contains(&digits)).then(|| span.start..span.start + end)
    })
}

/// A GS1 UDI: `(01)` and a GTIN-14 whose last digit checks the others (weights 3 and 1 from the
/// left, to the next multiple of 10).
fn gs1_udi(text: &str, span: Range<usize>) -> Option<Range<usize>> {
    let gtin = digits_of(&text[span.start + 4..span.start + 18]);
    let sum: u32 = gtin[..13]
        .iter()
        .enumerate()
        .map(|(i, d)| if i % 2 == 0 { 3 * d } else { *d })
        .sum();
    ((10 - sum % 10) % 10 == gtin[13]).then_some(span)
}

/// Words before a medical record number (en, de, fr, nl, es).
const MEDICAL_RECORD_WORDS: &[&str] = &[
    "mrn",
    "mr#",
    "medical record",
    "med rec",
    "patient id",
    "patient identifier",
    "patient number",
    "patient no",
    "chart number",
    "chart no",
    "hospital number",
    "hospital no",
    "patientennummer",
    "patienten-id",
    "patientenid",
    "fallnummer",
    "aufnahmenummer",
    "krankenblattnummer",
    "numéro de dossier",
    "n° de dossier",
    "dossier médical",
    "numéro patient",
    "numéro de patient",
    "ipp",
    "patiëntnummer",
    "patientnummer",
    "dossiernummer",
    "historia clínica",
    "número de historia",
    "nhc",
    "número de paciente",
];

/// Words before a health plan, insurance or beneficiary number (en, de, fr, nl, es).
const HEALTH_PLAN_WORDS: &[&str] = &[
    "member id",
    "member number",
    "member no",
    "membership number",
    "membership no",
    "subscriber id",
    "subscriber number",
    "health plan id",
    "health plan number",
    "health plan no",
    "plan id",
    "insurance id",
    "insurance number",
    "insurance no",
    "insurance policy",
    "policy number",
    "policy no",
    "policy id",
    "group number",
    "group no",
    "group id",
    "medicare",
    "medicaid",
    "mbi",
    "hicn",
    "beneficiary id",
    "beneficiary number",
    "versichertennummer",
    "krankenversichertennummer",
    "versicherungsnummer",
    "mitgliedsnummer",
    "policennummer",
    "numéro d'adhérent",
    "n° d'adhérent",
    "numéro adhérent",
    "numéro de police",
    "numéro d'assuré",
    "n° d'assuré",
    "verzekeringsnummer",
    "polisnummer",
    "lidnummer",
    "número de póliza",
    "póliza",
    "número de afiliación",
    "número de afiliado",
    "tarjeta sanitaria",
];

/// Words before a bank or customer account number (en, de, fr, nl, es).
const ACCOUNT_WORDS: &[&str] = &[
    "account",
    "acct",
    "a/c",
    "kontonummer",
    "konto",
    "kto",
    "numéro de compte",
    "n° de compte",
    "compte",
    "rekeningnummer",
    "rekening",
    "número de cuenta",
    "nº de cuenta",
    "cuenta",
];

/// Words before a licence or certificate number (en, de, fr, nl, es).
const LICENSE_WORDS: &[&str] = &[
    "licence",
    "license",
    "driver's licence",
    "driver's license",
    "drivers licence",
    "drivers license",
    "driving licence",
    "driver licence",
    "driver license",
    "dl",
    "certificate",
    "führerschein",
    "führerscheinnummer",
    "lizenz",
    "lizenznummer",
    "permis de conduire",
    "numéro de permis",
    "numéro de licence",
    "rijbewijs",
    "rijbewijsnummer",
    "permiso de conducir",
    "carnet de conducir",
    "licencia",
    "número de licencia",
    "número de colegiado",
];

/// Words before a US National Provider Identifier.
const NPI_WORDS: &[&str] = &["npi", "national provider identifier"];

/// Words right before a VIN, which may then fail the North American check (en, de, fr, nl, es).
const VIN_WORDS: &[&str] = &[
    "vin",
    "vehicle identification number",
    "chassis",
    "fahrgestellnummer",
    "fahrzeug-identifizierungsnummer",
    "fahrzeugidentifizierungsnummer",
    "fin",
    "numéro de châssis",
    "numéro d'identification du véhicule",
    "chassisnummer",
    "voertuigidentificatienummer",
    "número de bastidor",
    "bastidor",
    "número de chasis",
];

/// Words before a licence plate (en, de, fr, nl, es).
const PLATE_WORDS: &[&str] = &[
    "plate",
    "registration",
    "reg",
    "kennzeichen",
    "nummernschild",
    "immatriculation",
    "plaque",
    "kenteken",
    "nummerplaat",
    "matrícula",
    "matricula",
];

/// Words before a device's serial number or identifier (en, de, fr, nl, es).
const DEVICE_WORDS: &[&str] = &[
    "serial",
    "s/n",
    "sn",
    "device id",
    "device identifier",
    "udi",
    "unique device identifier",
    "seriennummer",
    "serien-nr",
    "gerätenummer",
    "geräte-id",
    "numéro de série",
    "n° de série",
    "serienummer",
    "número de serie",
];

/// Words before a passport number (en, de, fr, nl, es).
const PASSPORT_WORDS: &[&str] = &[
    "passport",
    "reisepass",
    "reisepassnummer",
    "passnummer",
    "pass-nr",
    "passeport",
    "paspoort",
    "paspoortnummer",
    "pasaporte",
];

/// Words before a fax number (en, de, fr, nl, es).
const FAX_WORDS: &[&str] = &["fax", "telefax", "télécopie", "télécopieur"];

/// Month names people write dates with (English, German, French, Dutch, Spanish), full and
/// abbreviated.
const MONTHS: &str = "jan(?:uary|uar|vier|uari)?|feb(?:ruary|ruar|ruari)?|f[ée]vr?(?:ier)?|mar(?:ch|s)?|m[äa]r(?:z|t)|apr(?:il)?|avr(?:il)?|ma[iy]|mei|jun[ei]?|juin|jul[iy]?|juil(?:let)?|aug(?:ust|ustus)?|ao[ûu]t|sep(?:t|tember|tembre)?|o[ck]t(?:ober|obre)?|nov(?:ember|embre)?|de[cz](?:ember)?|d[ée]c(?:embre)?|enero|febrero|marzo|abril|mayo|junio|julio|agosto|septiembre|octubre|noviembre|diciembre";

/// A date as people write it: ISO, day/month/year with `/`, `.` or `-`, "3 March 1984",
/// "March 3, 1984", with or without a weekday before it.
fn date_pattern() -> String {
    format!(
        r"(?i)\b(?:(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*\.?,?\s+)?(?:\d{{4}}-\d{{1,2}}-\d{{1,2}}|\d{{1,2}}[./\-]\d{{1,2}}[./\-](?:\d{{4}}|\d{{2}})|\d{{1,2}}(?:st|nd|rd|th)?\.?\s+(?:of\s+)?(?:{MONTHS})\.?,?\s+\d{{4}}|(?:{MONTHS})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}})\b"
    )
}

/// Words that say the date after them is a birth date, in the same sentence with no other
/// number between them (so "born in 1984, joined on 12/03/2019" keeps the second date).
const BIRTH_WORDS: &[&str] = &[
    "born",
    "dob",
    "d.o.b",
    "date of birth",
    "birth date",
    "birthdate",
    "birthday",
    "geb.",
    "geboren",
    "geburtsdatum",
    "né le",
    "née le",
    "né(e) le",
    "date de naissance",
    "geboortedatum",
    "geboren op",
    "fecha de nacimiento",
    "nacido",
    "nacida",
];

/// A real calendar date (see `is_calendar_date`).
fn calendar_date(text: &str, span: Range<usize>) -> Option<Range<usize>> {
    is_calendar_date(&text[span.clone()]).then_some(span)
}

/// An age above 89 (HIPAA Safe Harbor generalises those): just its number.
fn age_over_89(text: &str, span: Range<usize>) -> Option<Range<usize>> {
    let matched = &text[span.clone()];
    let at = matched.find(|c: char| c.is_ascii_digit())?;
    let len = matched[at..]
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(matched.len() - at);
    let age: u32 = matched[at..at + len].parse().ok()?;
    (90..=130)
        .contains(&age)
        .then(|| span.start + at..span.start + at + len)
}

/// Whether a date's numbers can be a day, a month and a year (either day-month order).
fn is_calendar_date(date: &str) -> bool {
    let numbers: Vec<u32> = date
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    let day_month = |d: u32, m: u32| (1..=31).contains(&d) && (1..=12).contains(&m);
    match numbers[..] {
        [y, m, d] if y >= 1000 => day_month(d, m),
        [a, b, _] => day_month(a, b) || day_month(b, a),
        // A month written as a word: only the day is a number.
        [d, _] => (1..=31).contains(&d),
        _ => false,
    }
}

/// A phone number's digits, between `min` and `max`, and not the tail of a longer run of
/// space-separated digit groups (an order number's last groups are no phone number).
fn phone_digits(text: &str, span: Range<usize>, min: usize, max: usize) -> Option<Range<usize>> {
    let mut before = text[..span.start].chars().rev();
    let glued = match (before.next(), before.next()) {
        (Some(c), _) if c.is_ascii_digit() => true,
        // A dialling prefix (`001-`) is joined by a hyphen; an order number's groups by spaces.
        (Some(' '), Some(d)) => d.is_ascii_digit(),
        _ => false,
    };
    if glued {
        return None;
    }
    // An extension's digits do not count.
    let s = &text[span.clone()];
    let number = s.split(['x', 'e', '#']).next().unwrap_or(s);
    let digits = number.bytes().filter(u8::is_ascii_digit).count();
    // A trailing ')' from "(0) 20" style is kept, an unmatched one is not part of the number.
    (min..=max).contains(&digits).then_some(span)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(entity: &str, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        for r in builtin(entity) {
            r.find_into(text, &BytesPresent::of(text), 0, &mut out);
        }
        out.iter()
            .map(|f| text[f.span.clone()].to_string())
            .collect()
    }

    // Checksums: known-good values pass, one changed digit fails.
    #[test]
    fn checksums() {
        assert!(luhn("4111111111111111"));
        assert!(!luhn("4111111111111112"));
        assert!(iban_valid("DE89370400440532013000"));
        assert!(iban_valid("GB82WEST12345698765432"));
        assert!(!iban_valid("DE89370400440532013001"));
    }

    // Cards are found in the usual layouts and only when Luhn holds.
    #[test]
    fn credit_cards() {
        assert_eq!(
            find("credit_card", "card 4111 1111 1111 1111."),
            ["4111 1111 1111 1111"]
        );
        assert_eq!(
            find("credit_card", "amex 3782-822463-10005 ok"),
            ["3782-822463-10005"]
        );
        assert!(find("credit_card", "IBAN DE10 4111 1111 1111 1111 33").is_empty());
        assert_eq!(
            find("credit_card", "ref 12 4111111111111111"),
            ["4111111111111111"]
        );
        assert!(find("credit_card", "4111 1111 1111 1112").is_empty());
    }

    // IBANs with and without spaces, followed by other words.
    #[test]
    fn ibans() {
        assert_eq!(
            find("iban", "pay DE89 3704 0044 0532 0130 00 BANK now"),
            ["DE89 3704 0044 0532 0130 00"]
        );
        assert_eq!(
            find("iban", "GB82WEST12345698765432."),
            ["GB82WEST12345698765432"]
        );
        assert!(find("iban", "DE89 3704 0044 0532 0130 01").is_empty());
        // Mod-97 passes with the word after it, but a German IBAN has 22 characters.
        assert!(find("iban", "DE92 9905 8781 1535 6904 17 was").is_empty());
    }

    // SSNs follow SSA rules; dates and invalid areas are not SSNs.
    #[test]
    fn ssns() {
        assert_eq!(find("ssn", "ssn 123-45-6789"), ["123-45-6789"]);
        assert!(find("ssn", "000-12-3456 and 666-12-3456 and 123-45 6789").is_empty());
    }

    // National ids that stand alone: generator and official values pass their checks; one
    // changed character, a prefix never issued, or an order number, date, phone or amount stays.
    #[test]
    fn national_ids() {
        for (entity, valid, near_misses) in [
            // Faker it_IT, then the usual example.
            ("it_codice_fiscale", "BCCFRC15M25E852P", &["BCCFRC15M25E852Q"][..]),
            ("it_codice_fiscale", "RSSMRA85T10A562S", &["RSSMRA85T10A562T"]),
            // Faker fr_FR; the INSEE example; Corsica's 2A counts as 19.
            ("fr_nir", "172023201312126", &["172023201312127", "172133201312126"]),
            ("fr_nir", "1 84 12 76 451 089 46", &["1 84 12 76 451 089 47"]),
            ("fr_nir", "2 69 05 2A 123 456 88", &["2 69 05 2B 123 456 88"]),
            // Faker en_GB's "ZZ .. .. .. T" is no NINO: ZZ is never issued, T is no suffix.
            ("uk_nino", "AB 12 34 56 C", &["ZZ 91 41 77 T", "ZZ 91 41 77 A", "QQ 12 34 56 C", "AO123456B", "GB123456A"]),
            // Faker es_ES nif and nie, then the usual examples.
            ("es_dni", "70908369J", &["70908369K"]),
            ("es_dni", "Y3919018Q", &["Y3919018R"]),
            ("es_dni", "12345678Z", &["12345678A"]),
            ("es_dni", "X1234567L", &["X1234567M"]),
            // No generator has them: examples that pass; all ten digits different; 1 thrice in a row.
            ("de_tax_id", "86 095 742 719", &["86 095 742 718", "12345678903", "11123456786"]),
            ("de_tax_id", "65929970489", &["65929970488"]),
            // Faker en_US itin; a middle group the IRS does not issue; mixed separators.
            ("us_itin", "977-94-0034", &["977-93-0034", "977-94 0034", "877-94-0034"]),
            ("us_itin", "912-70-1234", &["912-66-1234"]),
        ] {
            assert_eq!(find(entity, &format!("id {valid}, ok")), [valid], "{entity}");
            for miss in near_misses {
                assert!(find(entity, &format!("id {miss}, ok")).is_empty(), "{entity}: {miss}");
            }
        }
        let decoys = "Order 12345678 shipped 2024-03-15, call +44 20 7946 0958 or (555) 123-4567, \
                      total €1,250.00, ref 98765432101, ISBN 978-3-16-148410-0.";
        for entity in ["it_codice_fiscale", "fr_nir", "uk_nino", "es_dni", "de_tax_id", "us_itin"] {
            assert!(find(entity, decoys).is_empty(), "{entity}");
        }
    }

    // National ids of digits alone count only after their word: with it they need their check,
    // without it a valid one is some other number.
    #[test]
    fn national_ids_after_their_word() {
        for (entity, labelled, value, near_miss) in [
            ("nhs_number", "NHS number: 943 476 5919", "943 476 5919", "NHS No. 943 476 5918"),
            ("nhs_number", "NHS no. 9434765919", "9434765919", "NHS 9434765910"),
            // Faker nl_NL ssn; the usual example.
            ("nl_bsn", "BSN: 214035797", "214035797", "BSN: 214035798"),
            ("nl_bsn", "burgerservicenummer 111222333", "111222333", "sofinummer 111222334"),
            // Faker en_CA ssn; a Luhn-valid number starting with 8 (a business number).
            ("ca_sin", "SIN 278 018 460", "278 018 460", "SIN 278 018 461"),
            ("ca_sin", "Social Insurance Number: 278018460", "278018460", "SIN: 812 345 676"),
        ] {
            assert_eq!(find(entity, labelled), [value], "{entity}");
            assert!(find(entity, &format!("ref {value}")).is_empty(), "{entity}: {value}");
            assert!(find(entity, near_miss).is_empty(), "{entity}: {near_miss}");
        }
        // After its word, a NINO that HMRC would never issue is still someone's (test numbers).
        assert_eq!(find("uk_nino", "NI number: ZZ 91 41 77 T"), ["ZZ 91 41 77 T"]);
        assert_eq!(find("uk_nino", "National Insurance No. QQ123456C"), ["QQ123456C"]);
        assert!(find("uk_nino", "Ref ZZ 91 41 77 T").is_empty());
        // The word must name this number: not across another number or a sentence's end.
        assert!(find("nhs_number", "NHS clinic 4, 943 476 5919").is_empty());
        assert!(find("nl_bsn", "Geen BSN. Ordernummer 111222333").is_empty());
    }

    // Safe Harbor ids are found by the word before them, and only their value is redacted; the
    // same value without its word, or after other words, stays.
    #[test]
    fn ids_after_their_word() {
        for (entity, text, value) in [
            ("medical_record", "MRN: 48213377, seen today", "48213377"),
            ("medical_record", "Patient ID PT-778812", "PT-778812"),
            ("medical_record", "Patientennummer: 004 512 33", "004 512 33"),
            ("medical_record", "N° de dossier : A1234567", "A1234567"),
            ("health_plan", "Member ID: XYZ123456789.", "XYZ123456789"),
            ("health_plan", "Policy no. 12-3456-789", "12-3456-789"),
            ("health_plan", "Versichertennummer A123456780", "A123456780"),
            ("health_plan", "Medicare number is 1EG4TE5MK73", "1EG4TE5MK73"),
            ("account_number", "Account no. 12345678", "12345678"),
            ("account_number", "Kontonummer: 0532013000", "0532013000"),
            ("account_number", "acct #12-3456-78", "12-3456-78"),
            // Faker en_GB bban(): no IBAN, though mod-97 holds.
            ("account_number", "Account no. ZKPE18948635403486", "ZKPE18948635403486"),
            ("license_number", "Driver's license: D1234567", "D1234567"),
            ("license_number", "DEA number AB1234563", "AB1234563"),
            ("license_number", "NPI 1234567893", "1234567893"),
            // A VIN failing its check still counts right after VIN.
            ("vehicle_id", "VIN: 1HGCM82643A004352", "1HGCM82643A004352"),
            // Faker license_plate() for en_GB and de_DE.
            ("vehicle_id", "Plate: MG96 LDG", "MG96 LDG"),
            ("vehicle_id", "Kennzeichen GÜ-JG-963", "GÜ-JG-963"),
            ("vehicle_id", "plate 3-04046M SEEN", "3-04046M"),
            ("device_id", "S/N: X7K-20391", "X7K-20391"),
            ("device_id", "Serial number C02XK0GJJG5H", "C02XK0GJJG5H"),
            ("device_id", "IMEI 49-015420-323751-8", "49-015420-323751-8"),
            // Faker passport_number() for en_US and de_DE.
            ("passport", "Passport: F48244757", "F48244757"),
            ("passport", "Reisepass-Nr. H30361481", "H30361481"),
            ("fax", "Tel. 020 7946 0958, Fax: +44 20 7946 0959", "+44 20 7946 0959"),
            ("fax", "Telefax 030/1234567", "030/1234567"),
            // A German compound: the word's tail is glued to it.
            ("fax", "Faxnummer: 030 1234567", "030 1234567"),
            // Faker en_GB phone_number().
            ("fax", "Fax: (0141) 4960641", "(0141) 4960641"),
        ] {
            assert_eq!(find(entity, text), [value], "{entity}: {text}");
            assert!(find(entity, &format!("ref {value}")).is_empty(), "{entity}: {value}");
        }
        for (entity, text) in [
            ("medical_record", "Medical record reviewed on 12/03/2024"),
            ("medical_record", "MRN pending, call 0301 234567"),
            ("medical_record", "Patient ID: none. Order 12345678"),
            ("health_plan", "Medicare covers 20000 patients in group 12345"),
            ("account_number", "Account balance 1234567, total $1,250.00"),
            // A valid IBAN is `iban`'s.
            ("account_number", "Account DE89370400440532013000"),
            ("license_number", "MIT license 2.0, license plate ABC-1234"),
            ("license_number", "certificate 2024-03-15"),
            ("license_number", "DEA number AB1234564, NPI 1234567894"),
            ("vehicle_id", "registration closes 2024-03-15"),
            ("device_id", "IMEI 490154203237519, serial killer"),
            ("passport", "passport photo 2024, passport 12345"),
            ("fax", "Tel. 020 7946 0958, fax machine 2"),
            // A word inside another word is not that word.
            ("ca_sin", "since 278 018 460"),
        ] {
            assert!(find(entity, text).is_empty(), "{entity}: {text}");
        }
    }

    // Some Safe Harbor ids stand alone by their shape and check: a VIN (Faker's and the usual
    // example), a Medicare MBI with its dashes, a GS1 UDI; one changed character does not.
    #[test]
    fn ids_by_their_shape() {
        for (entity, value, near_miss) in [
            ("vehicle_id", "RDU2EVYE9J2T75337", "RDU2EVYE8J2T75337"),
            ("vehicle_id", "1HGCM82633A004352", "1HGCM82643A004352"),
            ("health_plan", "1EG4-TE5-MK73", "1EG4-TS5-MK73"),
            ("device_id", "(01)00643169007222(17)160128(21)BLC200461H", "(01)00643169007223"),
        ] {
            assert_eq!(find(entity, &format!("ref {value} ok")), [value], "{entity}");
            assert!(find(entity, &format!("ref {near_miss} ok")).is_empty(), "{near_miss}");
        }
        // All digits: no VIN, though the check holds.
        assert!(find("vehicle_id", "11111111111111111").is_empty());
    }

    // A birth date in any common form is found after a birth word; other dates, birth words
    // too far away or in another sentence, and impossible dates are kept.
    #[test]
    fn birth_dates() {
        for (text, date) in [
            ("Patient DOB: 12/03/1984.", "12/03/1984"),
            ("D.O.B. 1984-03-12", "1984-03-12"),
            ("She was born on 3rd of March 1984 in Leeds", "3rd of March 1984"),
            ("Date of birth: Monday, March 3, 1984", "Monday, March 3, 1984"),
            ("Herr Müller, geb. 12.03.1984, wohnhaft", "12.03.1984"),
            ("Mme Dupont, née le 3 mars 1984", "3 mars 1984"),
            ("born 03-12-84", "03-12-84"),
        ] {
            assert_eq!(find("date_of_birth", text), [date], "{text}");
        }
        for text in [
            "Seen on 12/03/2024 for a follow-up.",
            "Born in 1984, she joined on 12/03/2019.",
            "Invoice dated 3 March 2024, due 2024-04-02.",
            "born on 31/13/1984",
            "stubborn bug since 12/03/1984",
            "She was born abroad. On 12/03/2020 she moved.",
        ] {
            assert!(find("date_of_birth", text).is_empty(), "{text}");
        }
    }

    // What the rules rejected or know to be no PII is found as a veto; a valid card, IBAN or
    // a plain id is not.
    #[test]
    fn vetoes() {
        let vetoes = Vetoes::default();
        let found = |text: &str| -> Vec<String> {
            vetoes.find(text).into_iter().map(|r| text[r].to_string()).collect()
        };
        assert_eq!(found("order 4111 1111 1111 1112 shipped"), ["4111 1111 1111 1112"]);
        let iban = "DE89 3704 0044 0532 0130 01";
        assert!(found(&format!("ref {iban}")).contains(&iban.to_string()));
        assert_eq!(found("see INC-2024-000123"), ["INC-2024-000123"]);
        assert_eq!(found("v2.14.1 at 10:30 for $1,250.00"), ["v2.14.1", "$1,250.00", "10:30"]);
        assert!(found("card 4111 1111 1111 1111 ok").is_empty());
        let valid = "DE89 3704 0044 0532 0130 00";
        assert!(!found(valid).contains(&valid.to_string()));
        assert!(found("MRN 48213377, passport 533380006").is_empty());
    }

    // Every calendar date is a `date`; only ages from 90 are `age_over_89`, as their number.
    #[test]
    fn dates_and_old_ages() {
        assert_eq!(
            find("date", "seen 12/03/2024 and on March 3, 2025; not 31/13/2024"),
            ["12/03/2024", "March 3, 2025"]
        );
        assert_eq!(
            find("age_over_89", "a 93-year-old woman, aged 91, age: 104; 89 years old, aged 45"),
            ["93", "91", "104"]
        );
    }

    // IPv4 and IPv6, but not times, versions or C++ paths.
    #[test]
    fn ip_addresses() {
        assert_eq!(find("ip_address", "from 192.168.1.20."), ["192.168.1.20"]);
        assert_eq!(
            find("ip_address", "host 2001:db8::8a2e:370:7334, ok"),
            ["2001:db8::8a2e:370:7334"]
        );
        assert_eq!(find("ip_address", "lo ::1 up"), ["::1"]);
        assert!(find("ip_address", "at 10:30:00, v1.2.3.4.5, std::vector").is_empty());
    }

    // Phones in international and national formats; dates are not phones.
    #[test]
    fn phones() {
        assert_eq!(
            find("phone", "call +44 20 7946 0958 now"),
            ["+44 20 7946 0958"]
        );
        assert_eq!(find("phone", "call (555) 123-4567 now"), ["(555) 123-4567"]);
        assert_eq!(find("phone", "mobile 07700 900123"), ["07700 900123"]);
        assert!(find("phone", "on 2024-01-15 and 03/15/2024 12").is_empty());
        assert!(find("phone", "order 9735 0775 2753 6138 shipped").is_empty());
        // Faker's en_US and de_DE shapes: extensions, the 00 prefix, glued parentheses, one run
        // of ten digits after a phone word (and not without one).
        for (text, phone) in [
            ("call 617-698-2718x246.", "617-698-2718x246"),
            ("call (768)741-4700 ext. 894", "(768)741-4700 ext. 894"),
            ("call 568.926.9021x4278", "568.926.9021x4278"),
            ("on 001-305-660-8725.", "001-305-660-8725"),
            ("on +1-278-402-7704x04064", "+1-278-402-7704x04064"),
            ("Telefon (040)-6676260", "(040)-6676260"),
            ("Preferred contact: 3962825067.", "3962825067"),
        ] {
            // The longest finding is what the stage keeps (overlaps are resolved there).
            let found = find("phone", text);
            let longest = found.iter().max_by_key(|f| f.len()).map(String::as_str);
            assert_eq!(longest, Some(phone), "{text}");
        }
        assert!(find("phone", "Invoice 3962825067 paid").is_empty());
        assert!(find("phone", "Payroll reference 0070 1496 8020 2712.").is_empty());
        // A 13-digit phone passing Luhn is no card: cards are written in fours (or 4-6-5).
        assert!(find("credit_card", "on 001-305-660-8725.").is_empty());
        assert_eq!(find("credit_card", "card 3782 822463 10005"), ["3782 822463 10005"]);
        assert_eq!(find("fax", "by fax to 761.652.8545."), ["761.652.8545"]);
    }

    // Emails and URLs, with trailing punctuation left out.
    #[test]
    fn emails_and_urls() {
        assert_eq!(
            find("email", "mail jane.doe+x@mail.example.co.uk."),
            ["jane.doe+x@mail.example.co.uk"]
        );
        assert_eq!(
            find("url", "see (https://example.com/a?b=1)."),
            ["https://example.com/a?b=1"]
        );
    }

    // Deny lists match whole words, case-insensitively.
    #[test]
    fn deny_lists() {
        let r = Recognizer::deny_list("project", &["Apollo".into()]).unwrap();
        let mut out = Vec::new();
        let text = "apollo and Apollonia";
        r.find_into(text, &BytesPresent::of(text), 0, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].span, 0..6);
    }
}
