//! Structured personal data, each candidate validated rather than merely matched: Luhn and
//! brand ranges for cards, mod-97 and country lengths for IBANs, SSA rules for SSNs, numbering
//! plans for phones, real calendar dates, real IP addresses. One pass of one multi-pattern
//! automaton finds the candidates; validation and context words decide.

use super::context::{Ctx, adjust, class};
use super::{Candidate, EntityType};
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

fn cand(entity: EntityType, span: Range<usize>, score: f32, recognizer: &'static str) -> Candidate {
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
        Kind::Street => Some(cand(EntityType::Address, span, 0.6, "street_address")),
    }
}

// --- IBAN ---------------------------------------------------------------------------------

/// IBAN lengths by country (ISO 13616 registry).
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BR", 29),
    ("BY", 28),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IQ", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LC", 32),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MR", 27),
    ("MT", 31),
    ("MU", 30),
    ("NL", 18),
    ("NO", 15),
    ("PK", 24),
    ("PL", 28),
    ("PS", 29),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("SA", 24),
    ("SC", 31),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("ST", 25),
    ("SV", 28),
    ("TL", 23),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VA", 22),
    ("VG", 24),
    ("XK", 20),
];

/// Country length and the ISO 7064 mod-97 check.
pub(crate) fn iban(s: &str) -> bool {
    let compact: Vec<u8> = s
        .bytes()
        .filter(|b| *b != b' ')
        .map(|b| b.to_ascii_uppercase())
        .collect();
    let Some(country) = compact.get(..2) else {
        return false;
    };
    let want = IBAN_LENGTHS
        .iter()
        .find(|(c, _)| c.as_bytes() == country)
        .map(|(_, n)| *n);
    if want != Some(compact.len()) {
        return false;
    }
    let (head, tail) = compact.split_at(4);
    let mut rem: u32 = 0;
    for &b in tail.iter().chain(head) {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

// --- IP -----------------------------------------------------------------------------------

fn ipv4(text: &str, span: Range<usize>) -> Option<Candidate> {
    let s = &text[span.clone()];
    let addr = s.split('/').next()?;
    let ok = addr
        .split('.')
        .all(|o| o.parse::<u16>().is_ok_and(|v| v <= 255) && (o.len() == 1 || !o.starts_with('0')));
    if !ok {
        return None;
    }
    let ctx = Ctx::of(text, &span);
    let score = adjust(
        0.8,
        ctx.near(class::IP | class::ADDRESS),
        ctx.before(class::VERSION),
    );
    Some(cand(EntityType::IpAddress, span, score, "ipv4"))
}

// --- dates --------------------------------------------------------------------------------

fn date(text: &str, span: Range<usize>) -> Option<Candidate> {
    let s = &text[span.clone()];
    if s.bytes().next()?.is_ascii_digit() && !numeric_date_ok(s) {
        return None;
    }
    if Ctx::of(text, &span).near(class::BIRTH) {
        Some(cand(EntityType::DateOfBirth, span, 0.85, "date_of_birth"))
    } else {
        Some(cand(EntityType::Date, span, 0.6, "date"))
    }
}

/// A numeric date whose parts can be a real day, month and year in some order.
fn numeric_date_ok(s: &str) -> bool {
    let date_part = s.split([' ', 'T']).next().unwrap_or(s);
    let parts: Vec<u32> = date_part
        .split(['/', '.', '-'])
        .filter_map(|p| p.parse().ok())
        .collect();
    let [a, b, c] = parts[..] else {
        return false;
    };
    let day_month = |d: u32, m: u32| (1..=12).contains(&m) && (1..=31).contains(&d);
    if date_part
        .split(['/', '.', '-'])
        .next()
        .is_some_and(|p| p.len() == 4)
    {
        return (1000..=2999).contains(&a) && day_month(c, b);
    }
    let year_ok = c <= 99 || (1000..=2999).contains(&c);
    year_ok && (day_month(a, b) || day_month(b, a))
}

/// An age phrase ("turned 47", "a 38-year-old", "at the age of 61"): the number is the age.
fn age(text: &str, span: Range<usize>) -> Option<Candidate> {
    let s = &text[span.clone()];
    let start = s.find(|c: char| c.is_ascii_digit())?;
    let len = s[start..]
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(s.len() - start);
    let years: u32 = s[start..start + len].parse().ok()?;
    (years <= 120).then(|| {
        let at = span.start + start;
        cand(EntityType::Age, at..at + len, 0.7, "age")
    })
}

// --- numbers: cards, SSNs, phones, ids -----------------------------------------------------

fn number(text: &str, span: Range<usize>) -> Option<Candidate> {
    let s = &text[span.clone()];
    let (main, ext) = split_extension(s);
    let digits: String = main.chars().filter(char::is_ascii_digit).collect();
    let n = digits.len();
    if n > 19 {
        return None;
    }
    let seps: Vec<char> = main.chars().filter(|c| !c.is_ascii_digit()).collect();
    let plain_groups = seps.iter().all(|c| *c == ' ' || *c == '-');
    let ctx = Ctx::of(text, &span);

    // An identity document says so nearby; read that first.
    if (6..=15).contains(&n) && ctx.before(class::PASSPORT) {
        return Some(cand(EntityType::UsPassport, span, 0.8, "passport"));
    }
    if (5..=15).contains(&n) && ctx.before(class::LICENSE) {
        return Some(cand(
            EntityType::UsDriverLicense,
            span,
            0.75,
            "driver_license",
        ));
    }
    if ext.is_none()
        && plain_groups
        && let Some(c) = ssn(ctx, &span, main, &digits)
    {
        return Some(c);
    }
    if ext.is_none() && plain_groups && (12..=19).contains(&n) && luhn(&digits) {
        let brand = card_brand(&digits);
        let grouped = seps.is_empty() || groups_look_like_card(main);
        if grouped {
            let base = if brand.is_some() { 0.9 } else { 0.45 };
            let score = adjust(base, ctx.near(class::CARD), false);
            return Some(cand(
                EntityType::CreditCard,
                span,
                score,
                brand.unwrap_or("luhn"),
            ));
        }
    }
    if let Some(c) = phone(ctx, span.clone(), main, &digits) {
        return Some(c);
    }
    if n == 5 || (n == 9 && main.len() == 10 && main.as_bytes()[5] == b'-') {
        let zip_ctx = ctx.near(class::ZIP);
        let addr_ctx = ctx.near(class::ADDRESS);
        if zip_ctx || addr_ctx {
            let score = if zip_ctx { 0.75 } else { 0.5 };
            return Some(cand(EntityType::Postcode, span, score, "zip_code"));
        }
    }
    None
}

fn split_extension(s: &str) -> (&str, Option<&str>) {
    for marker in ["ext.", "ext", "x", "#"] {
        if let Some(i) = s.rfind(marker)
            && i > 0
        {
            let rest = s[i + marker.len()..].trim_start();
            if !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()) {
                return (s[..i].trim_end(), Some(rest));
            }
        }
    }
    (s, None)
}

fn ssn(ctx: Ctx, span: &Range<usize>, main: &str, digits: &str) -> Option<Candidate> {
    if digits.len() != 9 {
        return None;
    }
    let b = main.as_bytes();
    let shaped = main.len() == 11 && (b[3] == b'-' && b[6] == b'-' || b[3] == b' ' && b[6] == b' ');
    if !(shaped || main.len() == 9) {
        return None;
    }
    let (area, group, serial) = (&digits[..3], &digits[3..5], &digits[5..]);
    if area == "000" || area == "666" || area.starts_with('9') || group == "00" || serial == "0000"
    {
        return None;
    }
    if digits.bytes().all(|d| d == digits.as_bytes()[0]) || digits == "123456789" {
        return None;
    }
    let ctx = ctx.near(class::SSN);
    let base = match (shaped, b.get(3)) {
        (true, Some(b'-')) => 0.6,
        (true, _) => 0.4,
        _ => 0.1,
    };
    let score = adjust(base, ctx, false);
    (score >= 0.3).then(|| cand(EntityType::UsSsn, span.clone(), score, "us_ssn"))
}

/// Luhn checksum.
pub(crate) fn luhn(digits: &str) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.bytes().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    !digits.is_empty() && sum.is_multiple_of(10)
}

/// The card network whose prefix and length the number has.
fn card_brand(d: &str) -> Option<&'static str> {
    let n = d.len();
    let p = |k: usize| d.get(..k).and_then(|s| s.parse::<u32>().ok()).unwrap_or(0);
    match () {
        _ if d.starts_with('4') && matches!(n, 13 | 16 | 19) => Some("visa"),
        _ if ((51..=55).contains(&p(2)) || (2221..=2720).contains(&p(4))) && n == 16 => {
            Some("mastercard")
        }
        _ if matches!(p(2), 34 | 37) && n == 15 => Some("amex"),
        _ if (p(4) == 6011 || p(2) == 65 || (644..=649).contains(&p(3)))
            && (16..=19).contains(&n) =>
        {
            Some("discover")
        }
        _ if ((300..=305).contains(&p(3)) || matches!(p(2), 36 | 38 | 39))
            && (14..=19).contains(&n) =>
        {
            Some("diners")
        }
        _ if (3528..=3589).contains(&p(4)) && (16..=19).contains(&n) => Some("jcb"),
        _ if p(2) == 62 && (16..=19).contains(&n) => Some("unionpay"),
        _ if (p(2) == 50 || (56..=69).contains(&p(2))) && (12..=19).contains(&n) => Some("maestro"),
        _ => None,
    }
}

/// Separated cards come in groups of four (Amex and Diners: 4-6-5 / 4-6-4).
fn groups_look_like_card(main: &str) -> bool {
    let groups: Vec<usize> = main.split([' ', '-']).map(str::len).collect();
    let fours = groups[..groups.len() - 1].iter().all(|g| *g == 4) && groups.len() >= 3;
    fours || groups == [4, 6, 5] || groups == [4, 6, 4]
}

/// Country calling codes with their national significant number lengths.
const COUNTRY_CODES: &[(&str, std::ops::RangeInclusive<usize>)] = &[
    ("1", 10..=10),
    ("44", 9..=10),
    ("49", 6..=13),
    ("33", 9..=9),
    ("91", 10..=10),
    ("55", 10..=11),
    ("61", 9..=9),
    ("41", 9..=9),
    ("34", 9..=9),
    ("39", 6..=11),
    ("31", 9..=9),
    ("32", 8..=9),
    ("43", 4..=13),
    ("45", 8..=8),
    ("46", 7..=13),
    ("47", 8..=8),
    ("48", 9..=9),
    ("351", 9..=9),
    ("353", 7..=9),
    ("358", 5..=12),
    ("30", 10..=10),
    ("36", 8..=9),
    ("420", 9..=9),
    ("7", 10..=10),
    ("81", 9..=10),
    ("82", 8..=10),
    ("86", 10..=11),
    ("52", 10..=10),
    ("54", 10..=10),
    ("27", 9..=9),
    ("64", 8..=10),
    ("65", 8..=8),
    ("972", 8..=9),
    ("971", 8..=9),
    ("90", 10..=10),
    ("234", 8..=10),
    ("63", 10..=10),
    ("62", 9..=12),
    ("60", 9..=10),
    ("66", 8..=9),
    ("84", 9..=10),
    ("92", 10..=10),
    ("880", 10..=10),
    ("20", 9..=10),
    ("57", 10..=10),
    ("56", 9..=9),
    ("51", 9..=9),
    ("58", 10..=10),
    ("40", 9..=9),
    ("380", 9..=9),
    ("370", 8..=8),
    ("371", 8..=8),
    ("372", 7..=8),
    ("354", 7..=9),
    ("352", 4..=11),
];

fn phone(ctx: Ctx, span: Range<usize>, main: &str, digits: &str) -> Option<Candidate> {
    let n = digits.len();
    if !(7..=15).contains(&n) {
        return None;
    }
    if digits.bytes().all(|d| d == digits.as_bytes()[0]) {
        return None;
    }
    let against = ctx.before(class::NOT_PHONE);
    let ctx = ctx.near(class::PHONE);
    // A trunk prefix written as "(0)" after the country code is not part of the number.
    let intl_digits: String = main
        .replace("(0)", "")
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let separated = main.contains([' ', '-', '.', '(']);
    let (base, rule) = if main.starts_with('+') || (main.starts_with("00") && separated) {
        let rest = intl_digits.trim_start_matches("00");
        let known = COUNTRY_CODES
            .iter()
            .any(|(cc, len)| rest.starts_with(cc) && len.contains(&(rest.len() - cc.len())));
        if known {
            (0.85, "phone_e164")
        } else if (8..=15).contains(&rest.len()) {
            (0.6, "phone_intl")
        } else {
            return None;
        }
    } else if let Some(r) = national(main, digits) {
        r
    } else if separated && (7..=8).contains(&n) {
        (0.3, "phone_local")
    } else if !separated && (10..=11).contains(&n) {
        (0.25, "phone_digits")
    } else {
        return None;
    };
    let score = adjust(base, ctx, against);
    Some(cand(EntityType::Phone, span, score, rule))
}

/// Numbering-plan checks for the national formats of US/CA, UK, DE, FR, IN, BR and AU.
fn national(main: &str, d: &str) -> Option<(f32, &'static str)> {
    let n = d.len();
    let b = d.as_bytes();
    let groups: Vec<usize> = main
        .split([' ', '-', '.', '(', ')'])
        .filter(|g| !g.is_empty())
        .map(str::len)
        .collect();
    let separated = groups.len() > 1;
    let nanp = |x: &[u8]| x.len() == 10 && x[0] >= b'2' && x[3] >= b'2';
    // US / CA: (NXX) NXX-XXXX, NXX-NXX-XXXX, 1-NXX-NXX-XXXX, 001-NXX-…
    let us = match n {
        10 => nanp(b),
        11 => b[0] == b'1' && nanp(&b[1..]),
        13 => d.starts_with("001") && nanp(&b[3..]),
        _ => false,
    };
    if us && separated && groups.ends_with(&[3, 4]) {
        return Some((0.7, "phone_us"));
    }
    if n == 10 && d.starts_with('0') && d.as_bytes()[1] != b'0' {
        // FR 0X XX XX XX XX; AU 04XX XXX XXX, (0X) XXXX XXXX
        if groups == [2, 2, 2, 2, 2] {
            return Some((0.7, "phone_fr"));
        }
        if d.starts_with("04") && groups == [4, 3, 3] || groups == [2, 4, 4] {
            return Some((0.7, "phone_au"));
        }
    }
    // UK: 0 + 10 digits (01, 02, 03, 07, 08), grouped 5-6 / 4-3-4 / 3-4-4 / 4-6
    if n == 11
        && d.starts_with('0')
        && matches!(b[1], b'1' | b'2' | b'3' | b'7' | b'8')
        && separated
    {
        return Some((0.65, "phone_uk"));
    }
    // IN: mobile 10 digits starting 6-9 (often 5-5), or 0 + 10
    if n == 10 && matches!(b[0], b'6'..=b'9') && (groups == [5, 5] || !separated) {
        return Some((0.55, "phone_in"));
    }
    // BR: (XX) XXXXX-XXXX or (XX) XXXX-XXXX
    if (10..=11).contains(&n) && main.starts_with('(') && groups.first() == Some(&2) {
        return Some((0.7, "phone_br"));
    }
    // DE and other trunk-0 plans: 0 + area + subscriber, separated after the area code
    if (9..=12).contains(&n) && d.starts_with('0') && !d.starts_with("00") && separated {
        return Some((0.55, "phone_national"));
    }
    if us && separated {
        return Some((0.55, "phone_us"));
    }
    None
}

fn alnum_id(text: &str, span: Range<usize>) -> Option<Candidate> {
    let ctx = Ctx::of(text, &span);
    if ctx.before(class::PASSPORT) {
        return Some(cand(EntityType::UsPassport, span, 0.8, "passport"));
    }
    if ctx.before(class::LICENSE) {
        return Some(cand(
            EntityType::UsDriverLicense,
            span,
            0.75,
            "driver_license",
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(EntityType, String, &'static str)> {
        let mut v = Vec::new();
        find(text, &mut v);
        v.into_iter()
            .filter(|c| c.score >= 0.5)
            .map(|c| (c.entity, text[c.span].to_owned(), c.recognizer))
            .collect()
    }

    fn one(text: &str) -> Option<EntityType> {
        kinds(text).first().map(|k| k.0)
    }

    #[test]
    fn every_pattern_compiles() {
        let _ = regex();
    }

    #[test]
    fn cards_need_luhn_and_a_brand() {
        assert_eq!(
            one("card 4111 1111 1111 1111"),
            Some(EntityType::CreditCard)
        );
        assert_eq!(
            one("pay with 5500-0000-0000-0004"),
            Some(EntityType::CreditCard)
        );
        assert_eq!(one("amex 378282246310005"), Some(EntityType::CreditCard));
        assert_eq!(one("card 4111 1111 1111 1112"), None, "fails Luhn");
        assert_eq!(
            kinds("order 1234567812345670")[..].len(),
            0,
            "no brand, no context"
        );
    }

    #[test]
    fn ssns_follow_the_ssa_rules() {
        assert_eq!(one("my SSN is 536-32-3065"), Some(EntityType::UsSsn));
        assert_eq!(one("ssn 536 32 3065"), Some(EntityType::UsSsn));
        for bad in [
            "000-12-3456",
            "666-12-3456",
            "912-12-3456",
            "536-00-3065",
            "536-32-0000",
        ] {
            assert_ne!(one(&format!("SSN {bad}")), Some(EntityType::UsSsn), "{bad}");
        }
    }

    #[test]
    fn ibans_need_the_country_length_and_mod97() {
        assert_eq!(
            one("IBAN GB82 WEST 1234 5698 7654 32"),
            Some(EntityType::Iban)
        );
        assert_eq!(one("DE89370400440532013000"), Some(EntityType::Iban));
        assert_eq!(one("GB82WEST12345698765433"), None);
        assert_eq!(one("GB82WEST123456987654"), None, "wrong length");
    }

    #[test]
    fn phones_in_national_and_international_formats() {
        for p in [
            "+1 (415) 555-2671",
            "(415) 555-2671",
            "415-555-2671",
            "+44 20 7946 0958",
            "020 7946 0958",
            "07700 900123",
            "+49 30 12345678",
            "030 1234567",
            "01 23 45 67 89",
            "+33 1 23 45 67 89",
            "+91 98765 43210",
            "98765 43210",
            "(11) 98765-4321",
            "+55 11 98765 4321",
            "0412 345 678",
            "(02) 9876 5432",
            "+61 2 9876 5432",
            "+41 (0)71 526 99 04",
            "916.972.1680x22008",
        ] {
            assert_eq!(
                one(&format!("call me on {p} today")),
                Some(EntityType::Phone),
                "{p}"
            );
        }
        assert_eq!(one("in 2019 we sold 1500 units"), None);
    }

    #[test]
    fn dates_become_birth_dates_in_context() {
        assert_eq!(one("born on 1/27/1952"), Some(EntityType::DateOfBirth));
        assert_eq!(one("DOB: 1990-04-12"), Some(EntityType::DateOfBirth));
        assert_eq!(one("the meeting is on 12/11/2024"), Some(EntityType::Date));
        assert_eq!(one("born March 3, 1961"), Some(EntityType::DateOfBirth));
        assert_ne!(one("ratio 45/99/77"), Some(EntityType::Date));
    }

    #[test]
    fn ip_addresses_are_real() {
        assert_eq!(one("host 192.168.1.20 down"), Some(EntityType::IpAddress));
        assert_eq!(
            one("from 2001:db8::8a2e:370:7334"),
            Some(EntityType::IpAddress)
        );
        assert_eq!(
            one("6e40:4041:c617:e898:c11:40d2:c669:2eb4"),
            Some(EntityType::IpAddress)
        );
        assert_eq!(one("host 300.1.1.1"), None);
        assert_eq!(one("at 12:30:45 sharp"), None);
    }

    #[test]
    fn identity_numbers_need_their_context_words() {
        assert_eq!(
            one("passport number 912345678"),
            Some(EntityType::UsPassport)
        );
        assert_eq!(
            one("driver's license A1234567"),
            Some(EntityType::UsDriverLicense)
        );
        assert_eq!(one("part A1234567 in stock"), None);
    }

    #[test]
    fn ages_are_the_number_in_an_age_phrase() {
        for t in [
            "He just turned 63 years old",
            "a 38-year-old male",
            "retired at the age of 61",
        ] {
            let got = kinds(t);
            assert_eq!(got.len(), 1, "{t}");
            assert_eq!(got[0].0, EntityType::Age);
            assert!(got[0].1.bytes().all(|b| b.is_ascii_digit()), "{t}");
        }
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
        assert_eq!(one("my zip code is 94103"), Some(EntityType::Postcode));
        assert_eq!(one("my address is SW1A 1AA"), Some(EntityType::Postcode));
    }
}
