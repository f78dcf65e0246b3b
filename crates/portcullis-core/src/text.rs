//! Text normalisation that every detector shares: hidden characters removed and compatibility
//! forms (full-width digits, ligatures, circled letters) folded — with a map back to the
//! original's byte offsets, so findings point at what the client actually sent.

use std::borrow::Cow;
use std::ops::Range;
use unicode_normalization::{UnicodeNormalization, is_nfkc_quick};

/// Normalised text plus, when it differs, the original byte offset of each normalised byte.
#[derive(Debug, Clone)]
pub struct Normalized<'a> {
    pub text: Cow<'a, str>,
    /// `map[i]` = original byte offset of normalised byte `i`; one extra entry for the end.
    map: Option<Vec<u32>>,
    /// Hidden characters were removed (a sign of deliberate obfuscation).
    pub removed_hidden: bool,
}

impl Normalized<'_> {
    /// Whether normalisation changed anything.
    pub fn changed(&self) -> bool {
        self.map.is_some()
    }

    /// The original byte range a normalised range came from.
    pub fn original_range(&self, r: Range<usize>) -> Range<usize> {
        match &self.map {
            None => r,
            Some(m) => {
                let at = |i: usize| m.get(i).or(m.last()).copied().unwrap_or(0) as usize;
                let start = at(r.start);
                // The end is the end of the last character the range covers.
                let end = if r.end == 0 { 0 } else { at_end(m, r.end) };
                start..end.max(start)
            }
        }
    }

    /// Whether a normalised range covers text that changed (hidden characters inside it, or
    /// folded forms), i.e. the match was obfuscated in the original.
    pub fn range_was_altered(&self, r: Range<usize>, original: &str) -> bool {
        match &self.map {
            None => false,
            Some(_) => {
                let o = self.original_range(r.clone());
                original
                    .get(o)
                    .is_none_or(|orig| self.text.get(r).is_none_or(|norm| orig != norm))
            }
        }
    }
}

fn at_end(m: &[u32], end: usize) -> usize {
    // Offset of the original byte after the last covered normalised byte: the next
    // normalised byte's origin, unless that belongs to the same original character.
    let last = m.get(end - 1).copied().unwrap_or(0);
    let mut j = end;
    while let Some(&o) = m.get(j) {
        if o != last {
            return o as usize;
        }
        j += 1;
    }
    m.last().copied().unwrap_or(0) as usize
}

/// Characters that render as nothing and are used to split words past filters.
pub fn is_hidden(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}'
        | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}'
        | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0000}'..='\u{E0FFF}')
}

/// Removes hidden characters and applies NFKC per character, keeping an offset map.
/// Plain ASCII (most traffic) is returned borrowed, at memchr-like speed.
pub fn normalize(text: &str) -> Normalized<'_> {
    let clean = text.is_ascii()
        || (!text.chars().any(is_hidden)
            && is_nfkc_quick(text.chars()) == unicode_normalization::IsNormalized::Yes);
    if clean {
        return Normalized {
            text: Cow::Borrowed(text),
            map: None,
            removed_hidden: false,
        };
    }
    let mut out = String::with_capacity(text.len());
    let mut map = Vec::with_capacity(text.len() + 1);
    let mut removed_hidden = false;
    for (i, c) in text.char_indices() {
        if is_hidden(c) {
            removed_hidden = true;
            continue;
        }
        let before = out.len();
        if c.is_ascii() {
            out.push(c);
        } else {
            out.extend(std::iter::once(c).nfkc());
        }
        map.extend(std::iter::repeat_n(i as u32, out.len() - before));
    }
    map.push(text.len() as u32);
    Normalized {
        text: Cow::Owned(out),
        map: Some(map),
        removed_hidden,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_is_borrowed() {
        let n = normalize("plain text 4111");
        assert!(!n.changed());
        assert!(matches!(n.text, Cow::Borrowed(_)));
    }

    #[test]
    fn hidden_characters_and_fullwidth_digits_fold_and_map_back() {
        let original = "card ４１\u{200B}１１ end";
        let n = normalize(original);
        assert_eq!(n.text, "card 4111 end");
        assert!(n.removed_hidden);
        let r = n.original_range(5..9);
        assert_eq!(&original[r.clone()], "４１\u{200B}１１");
        assert!(n.range_was_altered(5..9, original));
        assert!(!n.range_was_altered(0..4, original));
        assert_eq!(&original[n.original_range(10..13)], "end");
    }

    #[test]
    fn accented_text_stays_composed() {
        let n = normalize("café ﬁne");
        assert_eq!(n.text, "café fine");
    }
}
