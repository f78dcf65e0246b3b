//! Structured personal data, each candidate validated rather than merely matched: Luhn and
//! brand ranges for cards, mod-97 and country lengths for IBANs, SSA rules for SSNs, numbering
//! plans for phones, real calendar dates, real IP addresses. One pass of one multi-pattern
//! automaton finds the candidates; validation and context words decide.
//!
//! # Layout
//! - this file: the candidate shapes, the one pass over the text, and which check reads
//!   each shape (e-mails, URLs, street addresses and UK postcodes have no check of their own).
//! - `numbers`: what a run of digits is (card, SSN, phone, identity number or ZIP code).
//! - `cards`, `ids`, `phones`: the checks for each kind of number.
//! - `ibans`, `ip`, `dates`, `ages`: the checks for the other shapes.

mod ages;
mod cards;
mod dates;
mod ibans;
mod ids;
mod ip;
mod numbers;
mod phones;

use super::context::{Ctx, adjust, class};
use super::{Candidate, EntityType};
use ages::age;
use dates::date;
use ibans::iban;
use ids::alnum_id;
use ip::ipv4;
use numbers::number;
use regex_automata::meta::Regex;
use regex_automata::{Anchored, Input, PatternID};
use std::ops::Range;
use std::sync::OnceLock;

/// Candidate shapes, in the order that breaks ties at the same start (earlier wins).
pub(crate) const PATTERNS: &[(Kind, &str)] = &[
    (
        Kind::Email,
        r"(?-u:\b)[A-Za-z0-9][A-Za-z0-9._%+\-]*@[A-Za-z0-9][A-Za-z0-9\-]*(?:\.[A-Za-z0-9][A-Za-z0-9\-]*)*\.[A-Za-z]{2,}(?-u:\b)",
    ),
    (
        Kind::Url,
        r"(?i:https?://|www\.)[A-Za-z0-9\-._~%]+(?::\d{1,5})?(?:/[^\s<>\x22'()\[\]{}]*)?",
    ),
    (
        Kind::Iban,
        r"(?-u:\b)[A-Za-z]{2}\d{2}(?:[ ]?[A-Za-z0-9]{4})+(?:[ ]?[A-Za-z0-9]{1,4})?(?-u:\b)",
    ),
    (
        Kind::Ipv4,
        r"(?-u:\b)\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?:/\d{1,2})?(?-u:\b)",
    ),
    (
        Kind::Ipv6,
        r"(?-u:\b)(?:[0-9A-Fa-f]{1,4}:){2,7}(?::|(?::[0-9A-Fa-f]{1,4}){1,6}|[0-9A-Fa-f]{1,4})(?-u:\b)|::(?:[0-9A-Fa-f]{1,4}:){0,6}[0-9A-Fa-f]{1,4}(?-u:\b)",
    ),
    (
        Kind::Date,
        r"(?-u:\b)(?:\d{4}-\d{1,2}-\d{1,2}(?:[T ]\d{1,2}:\d{2}(?::\d{2})?)?|\d{1,2}[/.\-]\d{1,2}[/.\-](?:\d{4}|\d{2}))(?-u:\b)",
    ),
    (
        Kind::Date,
        r"(?i)(?-u:\b)(?:\d{1,2}(?:st|nd|rd|th)?\s+(?:of\s+)?(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?,?\s+\d{4}|(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?\s+\d{1,2}(?:st|nd|rd|th)?,?\s+\d{4})(?-u:\b)",
    ),
    (
        Kind::Age,
        r"(?i)(?-u:\b)(?:(?:aged?|age of|turn(?:ed|s|ing)?)\s+\d{1,3}|\d{1,3}[- ]years?[- ]old|\d{1,3}\s*(?:yo|y/o|yrs))(?-u:\b)",
    ),
    (
        Kind::Number,
        r"(?:\+?\(\d{1,4}\)[ \-.]?|\+|(?-u:\b))\d(?:[\d]|[ \-.](?:\(0\)[ ]?)?\d|\)[ \-.]?\d|[ ]?\(\d{1,4}\)[ \-.]?\d)+(?:[ ]?(?:x|ext\.?|#)[ ]?\d{1,6})?(?-u:\b)",
    ),
    (
        Kind::AlnumId,
        r"(?-u:\b)(?:[A-Za-z]{1,3}\d{5,}[A-Za-z]?|\d{5,}[A-Za-z]{1,2})(?-u:\b)",
    ),
    (
        Kind::UkPostcode,
        r"(?-u:\b)[A-Z]{1,2}\d[A-Z\d]? \d[A-Z]{2}(?-u:\b)",
    ),
    (
        Kind::Street,
        r"(?i)(?-u:\b)\d{1,5}[A-Za-z]?(?:[ ][A-Z][A-Za-z'\.\-]+){1,4}[ ](?:street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|place|pl|square|sq|terrace|way|parkway|pkwy|highway|hwy|circle|cir|crescent|close)\.?(?-u:\b)",
    ),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Email,
    Url,
    Iban,
    Ipv4,
    Ipv6,
    Date,
    Age,
    Number,
    AlnumId,
    UkPostcode,
    Street,
}

fn regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        let pats: Vec<&str> = PATTERNS.iter().map(|(_, p)| *p).collect();
        #[allow(clippy::expect_used)] // the patterns are constants, covered by tests
        Regex::new_many(&pats).expect("structured PII patterns compile")
    })
}

const PRIORITY: u8 = 2;

/// Finds validated structured PII in (normalised) `text`.
pub(crate) fn find(text: &str, out: &mut Vec<Candidate>) {
    // Every shape here holds a digit, an '@', "://" or "www.": the automaton runs only around
    // those, so prose is skipped at memory speed.
    for region in regions(text, 2, 64, &TRIGGERS, |b, i| {
        let c = b[i];
        c.is_ascii_digit()
            || c == b'@'
            || c == b':' && b.get(i + 1..i + 3) == Some(b"//")
            || (c | 0x20) == b'w'
                && b.get(i..i + 4)
                    .is_some_and(|w| w.eq_ignore_ascii_case(b"www."))
    }) {
        find_in(text, region, out);
    }
}

/// Bytes that can be a trigger (the closure then decides): a table lookup skips the rest.
static TRIGGERS: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = b'0';
    while c <= b'9' {
        t[c as usize] = true;
        c += 1;
    }
    t[b'@' as usize] = true;
    t[b':' as usize] = true;
    t[b'w' as usize] = true;
    t[b'W' as usize] = true;
    t
};

/// The stretches of `text` worth searching: from `back` words before each trigger byte to
/// `ahead` bytes after the trigger's word, merged where they touch.
pub(crate) fn regions(
    text: &str,
    back: usize,
    ahead: usize,
    first: &[bool; 256],
    trigger: impl Fn(&[u8], usize) -> bool,
) -> Vec<Range<usize>> {
    let b = text.as_bytes();
    let mut out: Vec<Range<usize>> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !first[b[i] as usize] || !trigger(b, i) {
            i += 1;
            continue;
        }
        let mut start = i;
        while start > 0 && !b[start - 1].is_ascii_whitespace() {
            start -= 1;
        }
        for _ in 0..back {
            let mut j = start;
            while j > 0 && b[j - 1].is_ascii_whitespace() && b[j - 1] != b'\n' {
                j -= 1;
            }
            if j == start || j == 0 || b[j - 1] == b'\n' {
                break;
            }
            while j > 0 && !b[j - 1].is_ascii_whitespace() {
                j -= 1;
            }
            start = j;
        }
        let mut word_end = i;
        while word_end < b.len() && !b[word_end].is_ascii_whitespace() {
            word_end += 1;
        }
        let mut end = (word_end + ahead).min(b.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        match out.last_mut() {
            Some(last) if start <= last.end => last.end = last.end.max(end),
            _ => out.push(start..end),
        }
        i = word_end.max(i + 1);
    }
    out
}

fn find_in(text: &str, region: Range<usize>, out: &mut Vec<Candidate>) {
    let re = regex();
    let mut at = region.start;
    while at < region.end {
        let Some(m) = re.find(Input::new(text).range(at..region.end)) else {
            break;
        };
        let first = m.pattern().as_usize();
        let mut accepted = None;
        // The first pattern to match here may be the wrong reading (a date that is not a real
        // date is maybe a phone number): try the others anchored at the same place.
        for (i, (kind, _)) in PATTERNS.iter().enumerate().skip(first) {
            let span = if i == first {
                Some(m.range())
            } else {
                let pid = PatternID::new_unchecked(i);
                re.find(
                    Input::new(text)
                        .range(m.start()..region.end)
                        .anchored(Anchored::Pattern(pid)),
                )
                .map(|m| m.range())
            };
            if let Some(span) = span
                && let Some(c) = classify(*kind, text, span)
            {
                accepted = Some(c);
                break;
            }
        }
        match accepted {
            Some(c) => {
                at = c.span.end.max(m.start() + 1);
                out.push(c);
            }
            None => at = skip_token(text, m.start()),
        }
    }
}

/// The position after the word that starts at `from`, so a rejected number is not re-read
/// from its middle (every suffix of a long number would otherwise get its own chance).
fn skip_token(text: &str, from: usize) -> usize {
    let b = text.as_bytes();
    let mut i = from + 1;
    while i < b.len() && (b[i].is_ascii_alphanumeric()) {
        i += 1;
    }
    while i < text.len() && !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

pub(super) fn cand(
    entity: EntityType,
    span: Range<usize>,
    score: f32,
    recognizer: &'static str,
) -> Candidate {
    Candidate {
        entity,
        span,
        score,
        recognizer,
        priority: PRIORITY,
    }
}

fn classify(kind: Kind, text: &str, span: Range<usize>) -> Option<Candidate> {
    let s = &text[span.clone()];
    match kind {
        Kind::Email => Some(cand(EntityType::Email, span, 0.95, "email")),
        Kind::Url => {
            let trimmed = s.trim_end_matches(['.', ',', ';', ':', '!', '?']);
            let span = span.start..span.start + trimmed.len();
            Some(cand(EntityType::Url, span, 0.6, "url"))
        }
        Kind::Iban => iban(s).then(|| cand(EntityType::Iban, span, 0.95, "iban_mod97")),
        Kind::Ipv4 => ipv4(text, span),
        Kind::Ipv6 => s
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .filter(|_| s.matches(':').count() >= 4 || s.contains("::"))
            .map(|_| cand(EntityType::IpAddress, span, 0.85, "ipv6")),
        Kind::Date => date(text, span),
        Kind::Age => age(text, span),
        Kind::Number => number(text, span),
        Kind::AlnumId => alnum_id(text, span),
        Kind::UkPostcode => {
            let score = adjust(0.45, Ctx::of(text, &span).near(class::ADDRESS), false);
            Some(cand(EntityType::Postcode, span, score, "uk_postcode"))
        }
        Kind::Street => street(text, span),
    }
}

/// A street address: in text written with capitals, the street's name has one ("221 Baker
/// Street", not "5 events that took place").
fn street(text: &str, span: Range<usize>) -> Option<Candidate> {
    let s = &text[span.clone()];
    let mut from = span.start.saturating_sub(200);
    while !text.is_char_boundary(from) {
        from -= 1;
    }
    let mut to = (span.end + 200).min(text.len());
    while !text.is_char_boundary(to) {
        to += 1;
    }
    let words: Vec<&str> = s.split(' ').skip(1).collect();
    let named = words
        .iter()
        .any(|w| w.starts_with(|c: char| c.is_ascii_uppercase()));
    // In lower-case text, the name at least is no run of little words ("$100 in the street").
    const LITTLE: &[&str] = &[
        "a", "an", "the", "in", "on", "at", "of", "to", "for", "with", "that", "this", "my",
        "your", "our", "his", "her", "their", "is", "was",
    ];
    let plain = !words
        .iter()
        .any(|w| LITTLE.contains(&w.to_ascii_lowercase().as_str()));
    (named || plain && !crate::ner::shape::cased(&text[from..to]))
        .then(|| cand(EntityType::Address, span, 0.6, "street_address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn kinds(text: &str) -> Vec<(EntityType, String, &'static str)> {
        let mut v = Vec::new();
        find(text, &mut v);
        v.into_iter()
            .filter(|c| c.score >= 0.5)
            .map(|c| (c.entity, text[c.span].to_owned(), c.recognizer))
            .collect()
    }

    pub(super) fn one(text: &str) -> Option<EntityType> {
        kinds(text).first().map(|k| k.0)
    }

    #[test]
    fn every_pattern_compiles() {
        let _ = regex();
    }

    #[test]
    fn emails_urls_addresses() {
        assert_eq!(
            one("write to a.b+c@mail.example.co.uk"),
            Some(EntityType::Email)
        );
        assert_eq!(
            one("see https://www.example.com/path?q=1."),
            Some(EntityType::Url)
        );
        assert_eq!(
            one("I live at 221 Baker Street now"),
            Some(EntityType::Address)
        );
        assert_eq!(one("Name 5 events that took place in 1944"), None);
        assert_eq!(one("you found $100 in the street"), None);
        assert_eq!(one("my zip code is 94103"), Some(EntityType::Postcode));
        assert_eq!(one("my address is SW1A 1AA"), Some(EntityType::Postcode));
    }
}
