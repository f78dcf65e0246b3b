//! Personal data and credentials in text: validated structured recognisers (cards, IBANs,
//! SSNs, phones, …), secret recognisers (provider keys, PEM blocks, JWTs, passwords), and a
//! learned tagger for names, places and organisations — one scan that returns typed, scored,
//! placed findings with the recogniser that made each.
//!
//! Text is normalised first ([`portcullis_core::text::normalize`]): hidden characters go and
//! full-width forms fold, so obfuscated values are still found, reported as obfuscated, and
//! their spans point at what the client actually sent.
//!
//! Usable as a library without the gateway: it depends on `portcullis-core` (text
//! normalisation, hashing) and nothing that does I/O; the training and evaluation code
//! (`lab`) is compiled only with the `lab` feature.
//!
//! # Layout
//! - [`scan`] / [`scan_with`]: one pass over a text; [`Detection`]s with type, span, score.
//! - `structured/`: validated recognisers, one file per family (`cards`, `ibans`, `ids`,
//!   `phones`, `dates`, `ages`, `ip`), with `numbers` deciding what a run of digits is.
//! - `secrets`: provider keys, PEM blocks, JWTs, passwords in URLs and settings.
//! - [`ner`]: the learned tagger for names, places, organisations and addresses — `tags`,
//!   `tokens`, `lexicon`, `features`, `model` (weights and file format), `tagger` (decoding,
//!   committed weights `model/pii-ner.bin`), `shape` (what a tagged span must look like to be
//!   kept: a postcode in a postcode's place, an address with the marks of one) and, with the
//!   `lab` feature, `train` (gold tags and the perceptron).
//! - `context`, `nrp`: context words that raise or lower a finding; nationalities, religions,
//!   political groups.
//! - [`personal`]: whether a name is about someone in the conversation (the writer, a
//!   customer, a colleague) or someone the text only talks about, with the [`personal::Cue`]
//!   that says so.
//! - `lab/` (feature `lab`): `portcullis train pii` and `portcullis eval pii` — `data`,
//!   `scoring`, `eval`, `train`.

mod context;
#[cfg(feature = "lab")]
pub mod lab;
pub mod ner;
mod nrp;
pub mod personal;
mod secrets;
mod structured;

use portcullis_core::text::normalize;
use serde::Serialize;
use std::ops::Range;

/// The kinds of personal data and credentials the scanner knows; the policy is set per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EntityType {
    Email,
    Phone,
    UsSsn,
    CreditCard,
    Iban,
    IpAddress,
    DateOfBirth,
    Date,
    UsPassport,
    UsDriverLicense,
    Address,
    Postcode,
    Url,
    Person,
    Location,
    Organization,
    Title,
    Nrp,
    Age,
    Secret,
}

impl EntityType {
    /// Every type, in a stable order.
    pub const ALL: [EntityType; 20] = [
        EntityType::Email,
        EntityType::Phone,
        EntityType::UsSsn,
        EntityType::CreditCard,
        EntityType::Iban,
        EntityType::IpAddress,
        EntityType::DateOfBirth,
        EntityType::Date,
        EntityType::UsPassport,
        EntityType::UsDriverLicense,
        EntityType::Address,
        EntityType::Postcode,
        EntityType::Url,
        EntityType::Person,
        EntityType::Location,
        EntityType::Organization,
        EntityType::Title,
        EntityType::Nrp,
        EntityType::Age,
        EntityType::Secret,
    ];

    /// The name used in config, findings and placeholders (`EMAIL` → `[EMAIL_1]`).
    pub fn name(self) -> &'static str {
        match self {
            EntityType::Email => "EMAIL",
            EntityType::Phone => "PHONE",
            EntityType::UsSsn => "US_SSN",
            EntityType::CreditCard => "CREDIT_CARD",
            EntityType::Iban => "IBAN",
            EntityType::IpAddress => "IP_ADDRESS",
            EntityType::DateOfBirth => "DATE_OF_BIRTH",
            EntityType::Date => "DATE",
            EntityType::UsPassport => "US_PASSPORT",
            EntityType::UsDriverLicense => "US_DRIVER_LICENSE",
            EntityType::Address => "ADDRESS",
            EntityType::Postcode => "POSTCODE",
            EntityType::Url => "URL",
            EntityType::Person => "PERSON",
            EntityType::Location => "LOCATION",
            EntityType::Organization => "ORGANIZATION",
            EntityType::Title => "TITLE",
            EntityType::Nrp => "NRP",
            EntityType::Age => "AGE",
            EntityType::Secret => "SECRET",
        }
    }

    /// Parses a config name (case-insensitive).
    pub fn parse(s: &str) -> Option<EntityType> {
        EntityType::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s))
    }

    /// Credentials rather than personal data.
    pub fn is_secret(self) -> bool {
        self == EntityType::Secret
    }
}

impl std::fmt::Display for EntityType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One piece of personal data or one credential found in a text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detection {
    pub entity: EntityType,
    /// Byte range in the text as given (not the normalised text).
    pub span: Range<usize>,
    /// Confidence in [0, 1], after context words.
    pub score: f32,
    /// The recogniser that found it (`luhn_card`, `openai_key`, `ner`, …).
    pub recognizer: &'static str,
    /// Found only after removing hidden characters or folding look-alike forms.
    pub obfuscated: bool,
    /// For a name: why it is taken to be about someone in the conversation (the writer,
    /// someone they write to or about) rather than someone the text only talks about; `None`
    /// for other kinds and for names without such a cue. See [`personal`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub personal: Option<personal::Cue>,
}

/// Which recognisers run and how sure a finding must be to count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScanOptions {
    /// Run the learned name/place/organisation tagger.
    pub ner: bool,
    /// Findings scoring below this are dropped.
    pub min_score: f32,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            ner: true,
            min_score: 0.5,
        }
    }
}

/// A candidate before overlap resolution, in normalised-text offsets.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub entity: EntityType,
    pub span: Range<usize>,
    pub score: f32,
    pub recognizer: &'static str,
    /// Higher wins an overlap: secrets over validated structure over the tagger.
    pub priority: u8,
}

/// Scans `text` with every recogniser and returns non-overlapping findings in text order.
pub fn scan(text: &str, opts: &ScanOptions) -> Vec<Detection> {
    scan_with(text, opts, Some(&ner::Tagger::builtin()))
}

/// [`scan`] with a given tagger (training scores its folds' models this way).
pub fn scan_with(
    text: &str,
    opts: &ScanOptions,
    tagger: Option<&ner::Tagger<'_>>,
) -> Vec<Detection> {
    if text.is_empty() {
        return Vec::new();
    }
    let norm = normalize(text);
    let t: &str = &norm.text;
    let mut cands = Vec::new();
    secrets::find(t, &mut cands);
    structured::find(t, &mut cands);
    nrp::find(t, &mut cands);
    if opts.ner
        && let Some(tagger) = tagger
    {
        tagger.find(t, &mut cands);
    }
    let mut kept = join_address_lines(resolve(cands, opts.min_score), t);
    ner::shape::settle_addresses(t, &mut kept);
    let cues = personal::mark(t, &mut kept);
    let found = kept.into_iter().zip(cues).map(|(c, personal)| Detection {
        entity: c.entity,
        span: norm.original_range(c.span.clone()),
        score: c.score,
        recognizer: c.recognizer,
        obfuscated: norm.changed() && norm.range_was_altered(c.span, text),
        personal,
    });
    merge_collisions(found)
}

/// Findings that do not overlap in the normalised text can in the original: one original
/// character folds to several (a ligature, an enclosed number), and two findings inside it
/// map back to the same bytes. Such findings become one over both spans; the stronger one's
/// reading names it.
fn merge_collisions(found: impl Iterator<Item = Detection>) -> Vec<Detection> {
    let mut out: Vec<Detection> = Vec::new();
    for d in found {
        match out.last_mut() {
            Some(last) if d.span.start < last.span.end => {
                let span = last.span.start.min(d.span.start)..last.span.end.max(d.span.end);
                let obfuscated = last.obfuscated || d.obfuscated;
                if d.score > last.score {
                    *last = d;
                }
                last.span = span;
                last.obfuscated = obfuscated;
            }
            _ => out.push(d),
        }
    }
    out
}

/// A postal address runs on: street, then town, region, country and postcode, separated
/// only by commas and line breaks. A place or postcode that continues an address is a line of
/// that address, not a finding of its own.
fn join_address_lines(kept: Vec<Candidate>, text: &str) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = Vec::with_capacity(kept.len());
    for c in kept {
        if let Some(last) = out.last_mut()
            && last.entity == EntityType::Address
            && matches!(
                c.entity,
                EntityType::Location | EntityType::Postcode | EntityType::Address
            )
            && text.get(last.span.end..c.span.start).is_some_and(|gap| {
                gap.len() <= 6
                    && gap.bytes().filter(|b| *b == b'\n').count() <= 1
                    && gap
                        .bytes()
                        .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b',' | b'.'))
            })
        {
            last.span.end = c.span.end;
            continue;
        }
        out.push(c);
    }
    out
}

/// Drops weak candidates and resolves overlaps: higher priority, then higher score, then longer.
fn resolve(mut cands: Vec<Candidate>, min_score: f32) -> Vec<Candidate> {
    cands.retain(|c| c.score >= min_score && c.span.start < c.span.end);
    // A postcode inside an address is part of the address; a nationality word inside a
    // tagged name, place or address ("North American Van Lines") is part of that name.
    let within = |kinds: &[EntityType]| -> Vec<Range<usize>> {
        cands
            .iter()
            .filter(|c| kinds.contains(&c.entity))
            .map(|c| c.span.clone())
            .collect()
    };
    let addresses = within(&[EntityType::Address]);
    let names = within(&[
        EntityType::Address,
        EntityType::Location,
        EntityType::Organization,
        EntityType::Person,
    ]);
    // Whether a span of `spans` at least `extra` bytes longer holds `s`. A name no longer
    // than a nationality word is the tagger's other reading of the word, not a name around
    // it: the word list wins that one.
    let inside = |spans: &[Range<usize>], s: &Range<usize>, extra: usize| {
        spans
            .iter()
            .any(|a| a.start <= s.start && s.end <= a.end && a.len() >= s.len() + extra)
    };
    cands.retain(|c| match c.entity {
        EntityType::Postcode => !inside(&addresses, &c.span, 0),
        EntityType::Nrp => !inside(&names, &c.span, 1),
        _ => true,
    });
    cands.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then(b.score.total_cmp(&a.score))
            .then((b.span.end - b.span.start).cmp(&(a.span.end - a.span.start)))
            .then(a.span.start.cmp(&b.span.start))
    });
    // Kept spans never overlap, so a map from start to end answers "is this free?" by
    // looking at the neighbours alone.
    let mut taken: std::collections::BTreeMap<usize, usize> = std::collections::BTreeMap::new();
    let mut kept: Vec<Candidate> = Vec::with_capacity(cands.len());
    for c in cands {
        let left_free = taken
            .range(..c.span.end)
            .next_back()
            .is_none_or(|(_, end)| *end <= c.span.start);
        if left_free {
            taken.insert(c.span.start, c.span.end);
            kept.push(c);
        }
    }
    kept.sort_by_key(|c| c.span.start);
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<(EntityType, &str)> {
        scan(text, &ScanOptions::default())
            .into_iter()
            .map(|d| (d.entity, &text[d.span]))
            .collect()
    }

    #[test]
    fn the_lines_of_an_address_join_it() {
        let cand = |entity, span: Range<usize>| Candidate {
            entity,
            span,
            score: 0.9,
            recognizer: "test",
            priority: 1,
        };
        let text = "Send it to 12 Main St, Springfield\n 62704 and to Paris too";
        let kept = join_address_lines(
            vec![
                cand(EntityType::Address, 11..21),
                cand(EntityType::Location, 23..34),
                cand(EntityType::Postcode, 36..41),
                cand(EntityType::Location, 49..54),
            ],
            text,
        );
        assert_eq!(kept.len(), 2);
        assert_eq!(
            &text[kept[0].span.clone()],
            "12 Main St, Springfield\n 62704"
        );
        assert_eq!(
            &text[kept[1].span.clone()],
            "Paris",
            "a place after other words stays"
        );
    }

    #[test]
    fn structured_and_secret_findings_come_back_in_order() {
        let text = "Mail jane.roe@example.org, card 4111 1111 1111 1111, key sk-proj-abcDEF1234567890abcdefGHIJ";
        let got = found(text);
        assert!(got.contains(&(EntityType::Email, "jane.roe@example.org")));
        assert!(got.contains(&(EntityType::CreditCard, "4111 1111 1111 1111")));
        assert!(got.contains(&(EntityType::Secret, "sk-proj-abcDEF1234567890abcdefGHIJ")));
    }

    #[test]
    fn findings_inside_one_folded_character_become_one() {
        // "½" folds to "1⁄2": two readings inside it mapped back to the same two bytes and
        // were reported twice (found by scripts/fuzz; fuzz/corpus/pii/fold-collision-half).
        let text = "My card is 41struction N\u{4}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{fffd}treet\u{2019}S, Lon\u{0}\u{0}\u{0}\u{0}\u{0}=BMy card is 41struction N\u{4}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{fffd}treet\u{2019}S, Lon\u{0}\u{0}\u{0}\u{0}\u{0}=Baker\u{fffd}=Baker\u{fffd}t\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{18}\u{bd}\u{fffd}ker\u{fffd}t\u{0}\u{fffd}\u{fffd}\u{fffd}\u{fffd}don NW1 6W1 69.\u{fffd}";
        let found = scan(text, &ScanOptions::default());
        let half = text.find('\u{bd}').unwrap();
        assert!(
            found
                .iter()
                .any(|d| d.span.start <= half && half < d.span.end),
            "the folded character is still found: {found:?}"
        );
        for pair in found.windows(2) {
            assert!(pair[0].span.end <= pair[1].span.start, "{found:?}");
        }
    }

    #[test]
    fn colliding_findings_merge_over_both_spans_under_the_stronger_reading() {
        let d = |span: Range<usize>, entity, score| Detection {
            entity,
            span,
            score,
            recognizer: "test",
            obfuscated: false,
            personal: None,
        };
        let merged = merge_collisions(
            [
                d(0..4, EntityType::Person, 0.9),
                d(10..12, EntityType::Date, 0.6),
                d(10..14, EntityType::Location, 0.8),
                d(20..22, EntityType::Date, 0.7),
            ]
            .into_iter(),
        );
        assert_eq!(
            merged
                .iter()
                .map(|m| (m.span.clone(), m.entity))
                .collect::<Vec<_>>(),
            [
                (0..4, EntityType::Person),
                (10..14, EntityType::Location),
                (20..22, EntityType::Date)
            ]
        );
    }

    #[test]
    fn hidden_characters_are_found_and_reported_as_obfuscated() {
        let text = "card 4111\u{200B}1111\u{200B}1111\u{200B}1111 thanks";
        let d = scan(text, &ScanOptions::default());
        let card = d
            .iter()
            .find(|d| d.entity == EntityType::CreditCard)
            .expect("card found");
        assert!(card.obfuscated);
        assert_eq!(
            &text[card.span.clone()],
            "4111\u{200B}1111\u{200B}1111\u{200B}1111"
        );
        let plain = scan("card 4111111111111111", &ScanOptions::default());
        assert!(!plain[0].obfuscated);
    }

    #[test]
    fn fullwidth_digits_fold() {
        let got = found("SSN ５３６-３２-３０６５ please");
        assert_eq!(got, vec![(EntityType::UsSsn, "５３６-３２-３０６５")]);
    }

    #[test]
    fn overlaps_keep_the_stronger_recogniser() {
        let c = |e, s: Range<usize>, score, p| Candidate {
            entity: e,
            span: s,
            score,
            recognizer: "t",
            priority: p,
        };
        let kept = resolve(
            vec![
                c(EntityType::Person, 0..10, 0.9, 1),
                c(EntityType::Email, 2..12, 0.8, 3),
                c(EntityType::Location, 20..25, 0.3, 1),
            ],
            0.5,
        );
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].entity, EntityType::Email);
    }

    #[test]
    fn type_names_round_trip() {
        for t in EntityType::ALL {
            assert_eq!(EntityType::parse(t.name()), Some(t));
        }
        assert_eq!(EntityType::parse("email"), Some(EntityType::Email));
        assert_eq!(EntityType::parse("nope"), None);
    }
}
