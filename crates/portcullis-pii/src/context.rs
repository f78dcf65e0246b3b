//! Context words: the words around a candidate raise or lower confidence, as a human reader's
//! would ("SSN 536-32-3065" against "order 536-32-3065").

use std::ops::Range;

/// How far before a candidate (bytes) context words are looked for.
const BEFORE: usize = 64;
/// How far after.
const AFTER: usize = 32;

/// The stretches of text before and after `span` that context words are looked for in.
fn windows<'t>(text: &'t str, span: &Range<usize>) -> (&'t str, &'t str) {
    let mut from = span.start.saturating_sub(BEFORE);
    while !text.is_char_boundary(from) {
        from -= 1;
    }
    let mut to = (span.end + AFTER).min(text.len());
    while !text.is_char_boundary(to) {
        to += 1;
    }
    (&text[from..span.start], &text[span.end..to])
}

/// Context classes a word can belong to (bit flags).
pub(crate) mod class {
    pub const ADDRESS: u32 = 1;
    pub const BIRTH: u32 = 1 << 1;
    pub const SSN: u32 = 1 << 2;
    pub const PHONE: u32 = 1 << 3;
    pub const CARD: u32 = 1 << 4;
    pub const PASSPORT: u32 = 1 << 5;
    pub const LICENSE: u32 = 1 << 6;
    pub const NOT_PHONE: u32 = 1 << 7;
    pub const ZIP: u32 = 1 << 8;
    pub const IP: u32 = 1 << 9;
    pub const VERSION: u32 = 1 << 10;
    pub const KEY: u32 = 1 << 11;
}

/// Context words and their classes.
const WORDS: &[(&str, u32)] = {
    use class::*;
    &[
        ("address", ADDRESS),
        ("street", ADDRESS),
        ("live", ADDRESS),
        ("lives", ADDRESS),
        ("living", ADDRESS),
        ("city", ADDRESS),
        ("apt", ADDRESS),
        ("suite", ADDRESS),
        ("ship", ADDRESS),
        ("shipping", ADDRESS),
        ("deliver", ADDRESS),
        ("delivery", ADDRESS),
        ("mail", ADDRESS),
        ("located", ADDRESS),
        ("moved", ADDRESS),
        ("zip", ZIP | ADDRESS),
        ("zipcode", ZIP | ADDRESS),
        ("postcode", ZIP | ADDRESS),
        ("postal", ZIP | ADDRESS),
        ("born", BIRTH),
        ("birth", BIRTH),
        ("birthday", BIRTH),
        ("dob", BIRTH),
        ("birthdate", BIRTH),
        ("b", BIRTH),
        ("ssn", SSN),
        ("social", SSN),
        ("ss#", SSN),
        ("tin", SSN),
        ("taxpayer", SSN),
        ("phone", PHONE),
        ("call", PHONE),
        ("tel", PHONE),
        ("telephone", PHONE),
        ("mobile", PHONE),
        ("cell", PHONE),
        ("fax", PHONE),
        ("number", PHONE),
        ("contact", PHONE),
        ("reach", PHONE),
        ("text", PHONE),
        ("whatsapp", PHONE),
        ("landline", PHONE),
        ("dial", PHONE),
        ("ph", PHONE),
        ("mob", PHONE),
        ("card", CARD),
        ("credit", CARD),
        ("debit", CARD),
        ("visa", CARD),
        ("mastercard", CARD),
        ("amex", CARD),
        ("cc", CARD),
        ("payment", CARD),
        ("pay", CARD),
        ("passport", PASSPORT),
        ("driver", LICENSE),
        ("drivers", LICENSE),
        ("driver's", LICENSE),
        ("license", LICENSE),
        ("licence", LICENSE),
        ("dl", LICENSE),
        ("driving", LICENSE),
        ("lic", LICENSE),
        ("order", NOT_PHONE),
        ("invoice", NOT_PHONE),
        ("isbn", NOT_PHONE),
        ("id", NOT_PHONE),
        ("account", NOT_PHONE),
        ("ref", NOT_PHONE),
        ("reference", NOT_PHONE),
        ("tracking", NOT_PHONE),
        ("serial", NOT_PHONE),
        ("$", NOT_PHONE),
        ("usd", NOT_PHONE),
        ("eur", NOT_PHONE),
        ("price", NOT_PHONE),
        ("total", NOT_PHONE),
        ("population", NOT_PHONE),
        ("ip", IP),
        ("host", IP),
        ("server", IP),
        ("version", VERSION),
        ("v", VERSION),
        ("release", VERSION),
        ("build", VERSION),
        ("key", KEY),
        ("token", KEY),
        ("secret", KEY),
        ("password", KEY),
        ("passwd", KEY),
        ("api", KEY),
        ("apikey", KEY),
        ("api_key", KEY),
        ("auth", KEY),
        ("bearer", KEY),
        ("credential", KEY),
        ("credentials", KEY),
        ("aws_secret", KEY),
        ("access", KEY),
        ("private", KEY),
        ("azure", KEY),
        ("signature", KEY),
        ("sig", KEY),
    ]
};

/// A lower-cased word of up to 16 bytes packed into one integer, so a lookup compares
/// integers instead of calling memcmp.
pub(crate) fn pack(word: &[u8]) -> Option<u128> {
    if word.is_empty() || word.len() > 16 {
        return None;
    }
    let mut buf = [0u8; 16];
    for (d, s) in buf.iter_mut().zip(word) {
        *d = s.to_ascii_lowercase();
    }
    Some(u128::from_le_bytes(buf))
}

/// A fixed word list, looked up by packed word.
pub(crate) struct WordTable(pub(crate) Vec<(u128, u32)>);

impl WordTable {
    /// Builds the table (words over 16 bytes cannot be packed; a test keeps them out).
    pub fn new(words: impl IntoIterator<Item = (&'static str, u32)>) -> WordTable {
        let mut v: Vec<(u128, u32)> = words
            .into_iter()
            .filter_map(|(w, c)| Some((pack(w.as_bytes())?, c)))
            .collect();
        v.sort_unstable();
        WordTable(v)
    }

    /// The value of `word` (any case), or 0.
    #[inline]
    pub fn get(&self, word: &[u8]) -> u32 {
        let Some(k) = pack(word) else { return 0 };
        match self.0.binary_search_by(|e| e.0.cmp(&k)) {
            Ok(i) => self.0[i].1,
            Err(_) => 0,
        }
    }
}

/// A fixed word list written as one space-separated string (it reads as a list and formats
/// compactly), looked up without regard to ASCII case through a [`WordTable`] built on first
/// use.
pub(crate) struct Words {
    list: &'static str,
    table: std::sync::OnceLock<WordTable>,
}

impl Words {
    pub(crate) const fn new(list: &'static str) -> Words {
        Words {
            list,
            table: std::sync::OnceLock::new(),
        }
    }

    /// Whether `word` is on the list.
    pub(crate) fn has(&self, word: &str) -> bool {
        self.table
            .get_or_init(|| WordTable::new(self.list.split_whitespace().map(|w| (w, 1))))
            .get(word.as_bytes())
            != 0
    }
}

fn table() -> &'static WordTable {
    static T: std::sync::OnceLock<WordTable> = std::sync::OnceLock::new();
    T.get_or_init(|| WordTable::new(WORDS.iter().copied()))
}

/// The context classes of one word.
fn class_of(w: &[u8]) -> u32 {
    // Longer than a packed word: only `aws_secret_access_key` and its kin are context.
    if w.len() > 16 && w[..10].eq_ignore_ascii_case(b"aws_secret") {
        return class::KEY;
    }
    table().get(w)
}

/// The union of the classes of the words in `hay`.
fn classes(hay: &str) -> u32 {
    let t = table();
    let mut bits = 0;
    let word_byte = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'\'' | b'#' | b'$' | b'_');
    for w in hay.as_bytes().split(|&c| !word_byte(c)) {
        if w.len() > 16 {
            bits |= class_of(w);
        } else {
            bits |= t.get(w);
        }
    }
    bits
}

/// The context classes found before and after a candidate.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Ctx {
    pub before: u32,
    pub after: u32,
}

impl Ctx {
    /// Reads the words around `span` once.
    pub fn of(text: &str, span: &Range<usize>) -> Ctx {
        let (b, a) = windows(text, span);
        Ctx {
            before: classes(b),
            after: classes(a),
        }
    }

    /// A word of class `c` on either side.
    pub fn near(self, c: u32) -> bool {
        (self.before | self.after) & c != 0
    }

    /// A word of class `c` before the candidate.
    pub fn before(self, c: u32) -> bool {
        self.before & c != 0
    }
}

#[cfg(test)]
fn has_word(hay: &str, w: &str) -> bool {
    classes(hay) & class_of(w.as_bytes()) != 0
}

/// Raises a base score when context agrees, lowers it when context says it is something else.
pub(crate) fn adjust(base: f32, support: bool, against: bool) -> f32 {
    let mut s = base;
    if support {
        s += 0.35;
    }
    if against {
        s -= 0.3;
    }
    s.clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_context_word_fits_the_table() {
        assert!(WORDS.iter().all(|(w, _)| pack(w.as_bytes()).is_some()));
        assert_eq!(table().0.len(), WORDS.len());
        assert_eq!(class_of(b"AWS_SECRET_ACCESS_KEY"), class::KEY);
        assert_eq!(class_of(b"Passport"), class::PASSPORT);
    }

    #[test]
    fn words_must_be_whole() {
        assert!(has_word("my SSN is", "ssn"));
        assert!(!has_word("lessnotes", "ssn"));
        assert!(has_word("social security number:", "social"));
    }

    #[test]
    fn context_looks_both_ways_within_a_window() {
        let t = "Phone: 555 1234 thanks";
        let c = Ctx::of(t, &(7..15));
        assert!(c.near(class::PHONE) && c.before(class::PHONE));
        assert!(!c.near(class::CARD));
        let c = Ctx::of("call 555 1234", &(5..13));
        assert!(c.before(class::PHONE));
        let c = Ctx::of("555 1234 is my phone", &(0..8));
        assert!(c.near(class::PHONE) && !c.before(class::PHONE));
    }
}
