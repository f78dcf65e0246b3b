//! Raw text in the audit record, only when `[audit] text = "redacted"` says so: the canonical
//! input and the delivered output (the texts the record's HMACs cover), with every personal
//! data and secret finding replaced by `[TYPE]` and capped. The scan is the PII scanner's with
//! default options, whatever the PII guard's own settings, so no raw value is ever stored.

use portcullis_pii::{ScanOptions, scan};
use serde::Deserialize;

/// What the audit record keeps of a request's text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TextPolicy {
    /// No text, only its HMACs.
    #[default]
    None,
    /// The text with every finding replaced by `[TYPE]`, capped at `text_max_bytes`.
    Redacted,
}

/// Appended to a stored text that was cut at the cap.
pub const CUT_MARK: &str = "[CUT]";

/// Raw text gathered beyond the cap, so that a value straddling the cap is still recognised
/// (and replaced) as a whole.
const SLACK: usize = 16 * 1024;

/// A bounded copy of a request's text as it passes (a stream's deltas one by one).
#[derive(Debug, Clone)]
pub struct TextCopy {
    buf: String,
    /// Bytes of stored (redacted) text at most.
    max_bytes: usize,
    /// More text arrived than was gathered.
    cut: bool,
}

impl TextCopy {
    /// An empty copy whose stored text will hold at most `max_bytes`.
    pub fn new(max_bytes: usize) -> TextCopy {
        TextCopy {
            buf: String::new(),
            max_bytes,
            cut: false,
        }
    }

    /// Adds `text`, keeping at most the cap and the slack (cut on a char boundary).
    pub fn push(&mut self, text: &str) {
        let room = (self.max_bytes + SLACK).saturating_sub(self.buf.len());
        if text.len() <= room {
            self.buf.push_str(text);
        } else {
            self.buf.push_str(&text[..floor_char_boundary(text, room)]);
            self.cut = true;
        }
    }

    /// The text to store: redacted, then capped at `max_bytes` (marked with [`CUT_MARK`] when
    /// cut). Runs the PII scan: call it once, when the record is built.
    pub fn redacted(&self) -> String {
        // When the raw text was cut, nothing past the cap is kept: only that part was scanned
        // with enough text after it.
        let keep_raw = if self.cut {
            self.max_bytes
        } else {
            self.buf.len()
        };
        let red = redact(&self.buf, keep_raw);
        let cut = self.cut || red.len() > self.max_bytes;
        if !cut {
            return red;
        }
        let mut out = red[..floor_char_boundary(&red, self.max_bytes)].to_owned();
        out.push_str(CUT_MARK);
        out
    }
}

/// `text[..keep_raw]` with every PII and secret finding (in the whole of `text`) replaced by
/// `[TYPE]`; a finding that starts before `keep_raw` is replaced whole.
pub fn redact(text: &str, keep_raw: usize) -> String {
    let mut out = String::with_capacity(keep_raw.min(text.len()));
    let mut at = 0;
    for d in scan(text, &ScanOptions::default()) {
        if d.span.start >= keep_raw {
            break;
        }
        if d.span.start < at {
            continue;
        }
        out.push_str(&text[at..d.span.start]);
        out.push('[');
        out.push_str(d.entity.name());
        out.push(']');
        at = d.span.end;
    }
    if at < keep_raw {
        out.push_str(&text[at..floor_char_boundary(text, keep_raw)]);
    }
    out
}

/// The largest char boundary of `s` at or below `i`.
fn floor_char_boundary(s: &str, i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    (0..=i).rev().find(|&b| s.is_char_boundary(b)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_email_and_a_card_number_are_replaced_by_their_types() {
        let mut c = TextCopy::new(16 * 1024);
        c.push("user 60\nmail jane.doe@example.com, card 4111 1111 1111 1111 ");
        c.push("please");
        let r = c.redacted();
        assert!(r.contains("[EMAIL]"), "{r}");
        assert!(r.contains("[CREDIT_CARD]"), "{r}");
        assert!(!r.contains("jane.doe"), "{r}");
        assert!(!r.contains("4111"), "{r}");
        assert!(r.ends_with(" please"), "{r}");
        assert!(!r.contains(CUT_MARK), "{r}");
    }

    #[test]
    fn the_cap_cuts_on_a_char_boundary_and_says_so() {
        let mut c = TextCopy::new(10);
        c.push("ééééééééé"); // 18 bytes
        let r = c.redacted();
        assert_eq!(r, format!("ééééé{CUT_MARK}"));
        // Text far beyond the cap and its slack is not gathered, and is still marked as cut.
        let mut big = TextCopy::new(8);
        for _ in 0..10_000 {
            big.push("abcdefgh");
        }
        assert!(big.buf.len() <= 8 + SLACK);
        assert_eq!(big.redacted(), format!("abcdefgh{CUT_MARK}"));
        // A value straddling the cap is replaced whole, not half kept.
        let mut s = TextCopy::new(12);
        s.push("write to jane.doe@example.com");
        let r = s.redacted();
        assert!(r.starts_with("write to [EM"), "{r}");
        assert!(!r.contains("jane"), "{r}");
    }

    #[test]
    fn the_policy_parses_and_defaults_to_none() {
        #[derive(Deserialize)]
        struct T {
            #[serde(default)]
            text: TextPolicy,
        }
        let t: T = toml::from_str("").unwrap();
        assert_eq!(t.text, TextPolicy::None);
        let t: T = toml::from_str("text = \"redacted\"").unwrap();
        assert_eq!(t.text, TextPolicy::Redacted);
        let e = toml::from_str::<T>("text = \"raw\"")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("redacted"), "{e}");
    }
}
