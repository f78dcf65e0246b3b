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

/// The context classes of one lower-case word.
fn class_of(w: &str) -> u32 {
    use class::*;
    match w {
        "address" | "street" | "live" | "lives" | "living" | "city" | "apt" | "suite" | "ship"
        | "shipping" | "deliver" | "delivery" | "mail" | "located" | "moved" => ADDRESS,
        "zip" | "zipcode" | "postcode" | "postal" => ZIP | ADDRESS,
        "born" | "birth" | "birthday" | "dob" | "birthdate" | "b" => BIRTH,
        "ssn" | "social" | "ss#" | "tin" | "taxpayer" => SSN,
        "phone" | "call" | "tel" | "telephone" | "mobile" | "cell" | "fax" | "number"
        | "contact" | "reach" | "text" | "whatsapp" | "landline" | "dial" | "ph" | "mob" => PHONE,
        "card" | "credit" | "debit" | "visa" | "mastercard" | "amex" | "cc" | "payment" | "pay" => {
            CARD
        }
        "passport" => PASSPORT,
        "driver" | "drivers" | "driver's" | "license" | "licence" | "dl" | "driving" | "lic" => {
            LICENSE
        }
        "order" | "invoice" | "isbn" | "id" | "account" | "ref" | "reference" | "tracking"
        | "serial" | "$" | "usd" | "eur" | "price" | "total" | "population" => NOT_PHONE,
        "ip" | "host" | "server" => IP,
        "version" | "v" | "release" | "build" => VERSION,
        "key"
        | "token"
        | "secret"
        | "password"
        | "passwd"
        | "api"
        | "apikey"
        | "api_key"
        | "auth"
        | "bearer"
        | "credential"
        | "credentials"
        | "aws_secret_access_key"
        | "access"
        | "private"
        | "azure"
        | "signature"
        | "sig" => KEY,
        _ => 0,
    }
}

/// The union of the classes of the words in `hay`.
fn classes(hay: &str) -> u32 {
    let mut bits = 0;
    let mut buf = [0u8; 24];
    for w in
        hay.split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '\'' | '#' | '$' | '_')))
    {
        if w.is_empty() || w.len() > buf.len() {
            continue;
        }
        for (d, s) in buf.iter_mut().zip(w.bytes()) {
            *d = s.to_ascii_lowercase();
        }
        if let Ok(l) = std::str::from_utf8(&buf[..w.len()]) {
            bits |= class_of(l);
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
    classes(hay) & class_of(w) != 0
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
