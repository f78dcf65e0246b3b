//! Tokens: the units the tagger labels.

use std::ops::Range;

/// A token: a word (letters/digits, with inner apostrophes or hyphens) or one other character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub span: Range<usize>,
}

/// Splits text into tokens; whitespace is dropped except newlines, which are kept as tokens
/// because line breaks separate fields ("Name: …\nPhone: …").
pub fn tokenize(text: &str) -> Vec<Token> {
    let mut out = Vec::with_capacity(text.len() / 5 + 1);
    let mut it = text.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        if c.is_alphanumeric() {
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = it.peek() {
                let joiner = matches!(d, '\'' | '-' | '’' | '_')
                    && text[j + d.len_utf8()..]
                        .chars()
                        .next()
                        .is_some_and(char::is_alphanumeric);
                if d.is_alphanumeric() || joiner {
                    end = j + d.len_utf8();
                    it.next();
                } else {
                    break;
                }
            }
            out.push(Token { span: i..end });
        } else if c == '\n' || !c.is_whitespace() {
            out.push(Token {
                span: i..i + c.len_utf8(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_keep_inner_apostrophes_and_hyphens() {
        let t = "O'Brien-Smith lives at 5 Rue d'Alsace.\nMr. X MOCK_SAY";
        let words: Vec<&str> = tokenize(t).iter().map(|k| &t[k.span.clone()]).collect();
        assert_eq!(
            words,
            vec![
                "O'Brien-Smith",
                "lives",
                "at",
                "5",
                "Rue",
                "d'Alsace",
                ".",
                "\n",
                "Mr",
                ".",
                "X",
                "MOCK_SAY"
            ]
        );
    }
}
