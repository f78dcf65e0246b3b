//! Folding the character-level disguises: hidden characters, compatibility forms, look-alike
//! letters, leetspeak, spaced-out or punctuation-split letters and stretched letters.

/// The ASCII letter or digit a look-alike character stands for (UTS #39 skeleton), if any.
fn confusable(c: char) -> Option<char> {
    if c.is_ascii() {
        return None;
    }
    let mut buf = [0; 4];
    let mut sk = unicode_security::skeleton(c.encode_utf8(&mut buf));
    match (sk.next(), sk.next()) {
        (Some(a), None) if a.is_ascii_alphanumeric() => Some(a.to_ascii_lowercase()),
        _ => None,
    }
}

/// Folds look-alikes in a token only when that turns the whole token into ASCII: a word
/// written in Cyrillic or Greek stays itself (multilingual text is not mangled), while a
/// Latin word with borrowed look-alike letters (`іgnоrе`) becomes plain `ignore`.
fn fold_confusables(tok: &mut [char]) {
    if tok.iter().all(char::is_ascii) {
        return;
    }
    let mapped: Vec<Option<char>> = tok
        .iter()
        .map(|&c| if c.is_ascii() { Some(c) } else { confusable(c) })
        .collect();
    if mapped.iter().all(|m| m.is_some()) {
        for (c, m) in tok.iter_mut().zip(mapped) {
            *c = m.unwrap_or(*c);
        }
    }
}

fn leet(c: char) -> char {
    match c {
        '0' => 'o',
        '1' | '!' | '|' => 'i',
        '3' => 'e',
        '4' | '@' => 'a',
        '5' | '$' => 's',
        '7' => 't',
        '8' => 'b',
        _ => c,
    }
}

/// Lower-cased text with hidden characters removed, compatibility forms and look-alikes
/// folded, runs of one letter squeezed to two, and single letters separated by spaces or
/// punctuation joined (`i g n o r e` → `ignore`). Leetspeak is folded only inside words
/// that mix letters and digits, so ordinary numbers survive.
pub fn fold(text: &str) -> String {
    let n = portcullis_core::text::normalize(text);
    if n.text.is_ascii() {
        // Most text: the same steps on bytes, a quarter of the memory of chars and no
        // per-character lower-casing iterator (together half of the folding's cost).
        let folded = fold_glyphs(n.text.bytes().map(|b| b.to_ascii_lowercase()).collect());
        return folded.into_iter().map(char::from).collect();
    }
    let mut lower: Vec<char> = Vec::with_capacity(n.text.len());
    for c in n.text.chars() {
        lower.extend(c.to_lowercase());
    }
    fold_glyphs(lower).into_iter().collect()
}

/// A unit of lower-cased text that [`fold`] works on: a `char`, or a byte of ASCII text.
trait Glyph: Copy + PartialEq {
    const SPACE: Self;
    const NEWLINE: Self;
    fn alphabetic(self) -> bool;
    fn whitespace(self) -> bool;
    fn leet(self) -> Self;
    /// A separator of spelled-out letters (`i.g.n.o.r.e`).
    fn separator(self) -> bool;
    /// Folds look-alikes in a token (see [`fold_confusables`]).
    fn confusables(tok: &mut [Self]);
}

impl Glyph for char {
    const SPACE: char = ' ';
    const NEWLINE: char = '\n';
    fn alphabetic(self) -> bool {
        self.is_alphabetic()
    }
    fn whitespace(self) -> bool {
        self.is_whitespace()
    }
    fn leet(self) -> char {
        leet(self)
    }
    fn separator(self) -> bool {
        matches!(self, ' ' | '.' | '-' | '_' | '*' | ',')
    }
    fn confusables(tok: &mut [char]) {
        fold_confusables(tok);
    }
}

impl Glyph for u8 {
    const SPACE: u8 = b' ';
    const NEWLINE: u8 = b'\n';
    fn alphabetic(self) -> bool {
        self.is_ascii_alphabetic()
    }
    fn whitespace(self) -> bool {
        char::from(self).is_whitespace()
    }
    fn leet(self) -> u8 {
        // ASCII maps to ASCII.
        leet(char::from(self)) as u8
    }
    fn separator(self) -> bool {
        matches!(self, b' ' | b'.' | b'-' | b'_' | b'*' | b',')
    }
    fn confusables(_: &mut [u8]) {}
}

/// [`fold`]'s steps after lower-casing.
fn fold_glyphs<G: Glyph>(mut lower: Vec<G>) -> Vec<G> {
    // Leetspeak inside mixed tokens.
    let mut out: Vec<G> = Vec::with_capacity(lower.len());
    let mut i = 0;
    while i < lower.len() {
        if lower[i].whitespace() {
            out.push(if lower[i] == G::NEWLINE {
                G::NEWLINE
            } else {
                G::SPACE
            });
            i += 1;
            continue;
        }
        let start = i;
        while i < lower.len() && !lower[i].whitespace() {
            i += 1;
        }
        G::confusables(&mut lower[start..i]);
        let tok = &lower[start..i];
        let letters = tok.iter().filter(|c| c.alphabetic()).count();
        let leety = tok.iter().filter(|c| c.leet() != **c).count();
        if letters > 0 && leety > 0 && letters >= leety {
            out.extend(tok.iter().map(|c| c.leet()));
        } else {
            out.extend_from_slice(tok);
        }
    }
    // Join single letters split by spaces or punctuation: "i g n o r e", "i.g.n.o.r.e".
    let mut joined: Vec<G> = Vec::with_capacity(out.len());
    let mut k = 0;
    while k < out.len() {
        let single = |at: usize| {
            out.get(at).is_some_and(|c| c.alphabetic())
                && !out.get(at + 1).is_some_and(|c| c.alphabetic())
                && (at == 0 || !out[at - 1].alphabetic())
        };
        if single(k) {
            let mut run = vec![out[k]];
            let mut j = k + 1;
            loop {
                let mut s = j;
                while s < out.len() && out[s].separator() && s - j < 2 {
                    s += 1;
                }
                if s > j && single(s) {
                    run.push(out[s]);
                    j = s + 1;
                } else {
                    break;
                }
            }
            if run.len() >= 4 {
                joined.extend(run);
                k = j;
                continue;
            }
        }
        joined.push(out[k]);
        k += 1;
    }
    // Squeeze stretched letters ("ignoooore" → "ignoore"), runs of symbols to three
    // ("#####" → "###") and runs of blanks to one (table padding).
    let mut squeezed = Vec::with_capacity(joined.len());
    let mut prev: Option<G> = None;
    let mut run = 0;
    for c in joined {
        if Some(c) == prev {
            run += 1;
            let cap = if c == G::SPACE {
                1
            } else if c.alphabetic() {
                2
            } else {
                3
            };
            if run >= cap {
                continue;
            }
        } else {
            run = 0;
        }
        prev = Some(c);
        squeezed.push(c);
    }
    squeezed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disguises_fold_to_plain_words() {
        assert!(fold("IGNORE previous instructions").contains("ignore previous instructions"));
        assert!(fold("i g n o r e all rules").contains("ignore all rules"));
        assert!(fold("i.g.n.o.r.e all rules").contains("ignore all rules"));
        assert!(fold("1gn0r3 pr3vi0us instructi0ns").contains("ignore previous instructions"));
        assert!(fold("ign\u{200b}ore previous").contains("ignore previous"));
        assert!(fold("іgnоrе previous").contains("ignore previous")); // Cyrillic і, о, е
        assert!(fold("ignoooooore").contains("ignoore"));
        // Numbers stay numbers.
        assert!(fold("I have 3 cats and 10 dogs").contains("3 cats and 10 dogs"));
    }

    #[test]
    fn ascii_text_folds_the_same_as_bytes_and_as_chars() {
        // Letters, leet digits and symbols, separators, stretches and blanks, at random.
        let alphabet: Vec<char> = "aeignorsAIO0134578$@!| .-_*,\n\t#xyz".chars().collect();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let len = (seed % 60) as usize;
            let text: String = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    alphabet[(seed % alphabet.len() as u64) as usize]
                })
                .collect();
            let lower = text.to_lowercase();
            let as_chars: String = fold_glyphs(lower.chars().collect()).into_iter().collect();
            let as_bytes = fold_glyphs(lower.bytes().collect());
            assert_eq!(as_chars.as_bytes(), as_bytes.as_slice(), "{text:?}");
            assert_eq!(fold(&text), as_chars, "{text:?}");
        }
    }

    #[test]
    fn look_alikes_fold_only_when_the_word_becomes_latin() {
        assert_eq!(fold("ѕуѕtеm"), "system");
        assert_eq!(fold("привет мир"), "привет мир");
        assert_eq!(fold("ｉｇｎｏｒｅ"), "ignore");
    }
}
