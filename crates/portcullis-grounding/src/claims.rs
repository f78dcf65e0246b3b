//! Claims: an answer cut into sentences, each with its byte span, so unsupported ones can be
//! pointed at in the answer.

use std::ops::Range;

/// One sentence of an answer and where it sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim<'a> {
    /// Byte range in the answer, trimmed of surrounding whitespace.
    pub span: Range<usize>,
    pub text: &'a str,
}

/// Words after which a full stop does not end a sentence.
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "inc", "ltd",
    "co", "corp", "no", "fig", "approx", "jan", "feb", "aug", "sept", "oct",
];

/// Splits `answer` into claims: sentence ends (`.`, `!`, `?` before a space and a capital, digit
/// or quote), line breaks and list bullets. Abbreviations, initials and decimals do not split.
/// Pieces with no letter or digit are dropped.
pub fn split_claims(answer: &str) -> Vec<Claim<'_>> {
    let bytes = answer.as_bytes();
    let mut cuts = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'\n' || (matches!(b, b'.' | b'!' | b'?') && ends_sentence(answer, i)) {
            cuts.push(i + 1);
        }
        i += 1;
    }
    cuts.push(answer.len());
    let mut out = Vec::new();
    let mut start = 0;
    for end in cuts {
        if end <= start {
            continue;
        }
        push_trimmed(answer, start..end, &mut out);
        start = end;
    }
    out
}

fn push_trimmed<'a>(answer: &'a str, range: Range<usize>, out: &mut Vec<Claim<'a>>) {
    let Some(piece) = answer.get(range.clone()) else {
        return;
    };
    let lead = piece.len() - piece.trim_start().len();
    let trimmed = piece.trim();
    if !trimmed.chars().any(char::is_alphanumeric) {
        return;
    }
    let start = range.start + lead;
    out.push(Claim {
        span: start..start + trimmed.len(),
        text: trimmed,
    });
}

/// Whether the punctuation at byte `i` ends a sentence.
fn ends_sentence(text: &str, i: usize) -> bool {
    let bytes = text.as_bytes();
    let Some(rest) = text.get(i + 1..) else {
        return true;
    };
    let after = rest.trim_start_matches(['"', '\'', ')', '\u{201d}', '\u{2019}']);
    let Some(gap) = after.chars().next() else {
        return true;
    };
    if !gap.is_whitespace() {
        return false;
    }
    let next = after.trim_start().chars().next();
    let starts_new = next.is_none_or(|c| {
        c.is_uppercase() || c.is_ascii_digit() || matches!(c, '"' | '\u{201c}' | '(' | '-' | '*')
    });
    if !starts_new || bytes[i] != b'.' {
        return starts_new;
    }
    let word_start = text[..i]
        .char_indices()
        .rev()
        .find(|(_, c)| c.is_whitespace() || *c == '(')
        .map_or(0, |(p, c)| p + c.len_utf8());
    let word = text[word_start..i].to_lowercase();
    let single_initial = word.chars().count() == 1 && word.chars().all(char::is_alphabetic);
    !(single_initial || ABBREVIATIONS.contains(&word.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(s: &str) -> Vec<&str> {
        split_claims(s).into_iter().map(|c| c.text).collect()
    }

    #[test]
    fn sentences_split_with_their_spans() {
        let a = "Paris is the capital. It has 2.1 million people!  Is it big?";
        let c = split_claims(a);
        assert_eq!(
            texts(a),
            [
                "Paris is the capital.",
                "It has 2.1 million people!",
                "Is it big?"
            ]
        );
        for claim in &c {
            assert_eq!(&a[claim.span.clone()], claim.text);
        }
    }

    #[test]
    fn abbreviations_initials_and_decimals_do_not_split() {
        assert_eq!(
            texts("Dr. Smith met J. R. Tolkien in the U.S. in 1950. They paid $2.79 each."),
            [
                "Dr. Smith met J. R. Tolkien in the U.S. in 1950.",
                "They paid $2.79 each."
            ]
        );
    }

    #[test]
    fn lines_and_bullets_are_claims_and_empty_pieces_vanish() {
        assert_eq!(
            texts("- one fact\n- another\n\n..."),
            ["- one fact", "- another"]
        );
        assert!(split_claims("  \n ").is_empty());
        assert_eq!(texts("Arthur's Magazine"), ["Arthur's Magazine"]);
    }
}
