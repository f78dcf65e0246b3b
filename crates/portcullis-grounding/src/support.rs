//! Support: how much of each claim the documents back — key items (numbers, dates,
//! quantities, quoted strings, URLs, capitalised names) that must appear, and the overlap of
//! content words and word pairs.

use crate::claims::split_claims;
use crate::terms::{Word, words};
use serde::Serialize;
use std::collections::HashSet;
use std::ops::Range;

/// The documents an answer should stand on, indexed for look-ups.
#[derive(Debug, Clone, Default)]
pub struct Documents {
    words: HashSet<String>,
    pairs: HashSet<String>,
    folded: String,
    /// Words and pairs of the question: they back an answer's wording, never its facts.
    asked_words: HashSet<String>,
    asked_pairs: HashSet<String>,
}

impl Documents {
    /// Indexes `docs`.
    pub fn new<S: AsRef<str>>(docs: &[S]) -> Self {
        let mut d = Documents::default();
        for doc in docs {
            d.add(doc.as_ref());
        }
        d
    }

    /// Adds one more text to the support.
    pub fn add(&mut self, text: &str) {
        let ws = words(text);
        for w in &ws {
            self.words.insert(w.key.clone());
        }
        for pair in content(&ws).windows(2) {
            self.pairs.insert(pair_key(pair[0], pair[1]));
        }
        self.folded.push_str(&fold(text));
        self.folded.push('\n');
    }

    /// Adds what the user asked: an answer may reuse its words, but a number, name, quote or
    /// URL the question brings is a premise, not evidence — it still has to be in a document.
    pub fn add_question(&mut self, text: &str) {
        let ws = words(text);
        for w in content(&ws) {
            self.asked_words.insert(w.key.clone());
        }
        for pair in content(&ws).windows(2) {
            self.asked_pairs.insert(pair_key(pair[0], pair[1]));
        }
    }

    fn has_word(&self, key: &str) -> bool {
        self.words.contains(key) || self.asked_words.contains(key)
    }

    fn has_pair(&self, key: &str) -> bool {
        self.pairs.contains(key) || self.asked_pairs.contains(key)
    }

    /// Whether there is nothing to stand on.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }
}

/// How well one claim is supported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClaimSupport {
    /// Byte range of the claim in the answer.
    pub span: Range<usize>,
    /// In [0, 1]: 1 when every key item and content word appears in the documents.
    pub support: f32,
    /// Share of key items (numbers, names, quotes, URLs) found; 1 when the claim has none.
    pub key_items: f32,
    /// Share of content words found.
    pub words: f32,
    /// Share of adjacent content-word pairs found.
    pub pairs: f32,
    /// Key items the documents do not contain, as written in the answer.
    pub missing: Vec<String>,
}

/// The support of a whole answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The weakest claim's support (1 for an answer with no claims).
    pub support: f32,
    pub claims: Vec<ClaimSupport>,
}

impl Report {
    /// How likely the answer says something the documents do not: `1 - support`.
    pub fn hallucination(&self) -> f32 {
        1.0 - self.support
    }

    /// Claims whose support is under `threshold`.
    pub fn unsupported(&self, threshold: f32) -> impl Iterator<Item = &ClaimSupport> {
        self.claims.iter().filter(move |c| c.support < threshold)
    }
}

/// Scores every claim of `answer` against `docs`.
pub fn check(answer: &str, docs: &Documents) -> Report {
    let claims: Vec<ClaimSupport> = split_claims(answer)
        .into_iter()
        .map(|c| score_claim(c.text, c.span, docs))
        .collect();
    let support = claims.iter().map(|c| c.support).fold(1.0f32, f32::min);
    Report { support, claims }
}

/// The most support a claim with a missing key item can have: under the default threshold, so
/// one invented number, name, quote or URL makes a claim unsupported.
const MISSING_KEY_CAP: f32 = 0.45;

fn score_claim(text: &str, span: Range<usize>, docs: &Documents) -> ClaimSupport {
    let ws = words(text);
    let mut missing: Vec<String> = Vec::new();
    let mut items = 0usize;
    let mut absent = 0usize;
    // Adjacent missing capitalised words are one name ("Hunt Lowry").
    let mut name_end: Option<usize> = None;
    for w in &ws {
        if !(w.numeric || (w.capitalised && !w.stop)) {
            continue;
        }
        items += 1;
        if docs.words.contains(&w.key) {
            name_end = None;
            continue;
        }
        absent += 1;
        match missing.last_mut() {
            Some(last) if !w.numeric && name_end.is_some_and(|e| w.start == e + 1) => {
                last.push(' ');
                last.push_str(w.raw);
            }
            _ => missing.push(w.raw.to_owned()),
        }
        name_end = (!w.numeric).then_some(w.start + w.raw.len());
    }
    for phrase in quoted(text).into_iter().chain(urls(text)) {
        items += 1;
        if !docs.folded.contains(&fold(phrase)) {
            absent += 1;
            missing.push(phrase.to_owned());
        }
    }
    let key_items = share(items - absent, items);
    let cw = content(&ws);
    let found = cw.iter().filter(|w| docs.has_word(&w.key)).count();
    let words_share = share(found, cw.len());
    let pairs: Vec<String> = cw.windows(2).map(|p| pair_key(p[0], p[1])).collect();
    let pairs_found = pairs.iter().filter(|p| docs.has_pair(p)).count();
    let pairs_share = if pairs.is_empty() {
        words_share
    } else {
        share(pairs_found, pairs.len())
    };
    let lexical = 0.6 * words_share + 0.4 * pairs_share;
    let support = if items == 0 {
        lexical
    } else {
        (0.6 * key_items + 0.4 * lexical).min(if key_items < 1.0 {
            MISSING_KEY_CAP
        } else {
            1.0
        })
    };
    ClaimSupport {
        span,
        support,
        key_items,
        words: words_share,
        pairs: pairs_share,
        missing,
    }
}

fn share(found: usize, of: usize) -> f32 {
    if of == 0 {
        1.0
    } else {
        found as f32 / of as f32
    }
}

/// Content words: neither function words nor numbers.
fn content<'a, 'b>(ws: &'b [Word<'a>]) -> Vec<&'b Word<'a>> {
    ws.iter().filter(|w| !w.stop && !w.numeric).collect()
}

fn pair_key(a: &Word, b: &Word) -> String {
    format!("{} {}", a.key, b.key)
}

/// Lower case with runs of whitespace as one space, for substring look-ups.
fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for part in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(part.chars().flat_map(char::to_lowercase));
    }
    out
}

/// Strings in double quotes (straight or curly) of at least two characters.
fn quoted(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut open: Option<usize> = None;
    for (i, c) in text.char_indices() {
        match (c, open) {
            ('"' | '\u{201c}', None) => open = Some(i + c.len_utf8()),
            ('"' | '\u{201d}', Some(s)) => {
                let inner = text[s..i].trim();
                if inner.chars().filter(|c| c.is_alphanumeric()).count() >= 2 {
                    out.push(inner);
                }
                open = None;
            }
            _ => {}
        }
    }
    out
}

/// URLs (`http://`, `https://`, `www.`), without trailing punctuation.
fn urls(text: &str) -> Vec<&str> {
    text.split_whitespace()
        .filter_map(|t| {
            let at = t
                .find("http://")
                .or_else(|| t.find("https://"))
                .or_else(|| t.find("www."))?;
            let u = t[at..].trim_end_matches(['.', ',', ';', ':', ')', ']', '"', '\'', '!', '?']);
            (u.len() > 4).then_some(u)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "Bob Barker hosted The Price Is Right for 35 years before stepping down in \
        2007. Adjusted earnings were $2.79 per share, and revenue reached 1,200 million dollars. \
        The manual is at https://example.com/manual and says \"press the red button\".";

    fn docs() -> Documents {
        Documents::new(&[DOC])
    }

    #[test]
    fn a_faithful_answer_is_supported() {
        let r = check(
            "Barker hosted the show for 35 years. Earnings were 2.79 dollars per share \
             and revenue reached 1200 million dollars.",
            &docs(),
        );
        assert!(r.support > 0.6, "{r:?}");
        assert_eq!(r.unsupported(0.5).count(), 0);
    }

    #[test]
    fn a_changed_number_or_name_is_missing_with_its_span() {
        let answer =
            "Bob Barker hosted the show. He stepped down in 2009 and Drew Carey took over.";
        let r = check(answer, &docs());
        let bad: Vec<_> = r.unsupported(0.5).collect();
        assert_eq!(bad.len(), 1, "{r:?}");
        assert_eq!(
            &answer[bad[0].span.clone()],
            "He stepped down in 2009 and Drew Carey took over."
        );
        assert_eq!(bad[0].missing, ["2009", "Drew Carey"]);
        assert!(r.hallucination() > 0.5);
    }

    #[test]
    fn quotes_and_urls_must_appear_verbatim() {
        let ok = check(
            "The manual at https://example.com/manual says \"press the red button\".",
            &docs(),
        );
        assert_eq!(ok.unsupported(0.5).count(), 0, "{ok:?}");
        let bad = check(
            "The manual at https://evil.example/x says \"press the blue button\".",
            &docs(),
        );
        let c = &bad.claims[0];
        assert!(
            c.missing.contains(&"https://evil.example/x".to_owned()),
            "{c:?}"
        );
        assert!(
            c.missing.contains(&"press the blue button".to_owned()),
            "{c:?}"
        );
    }

    #[test]
    fn words_the_documents_never_use_lower_support() {
        let near = check("Barker stepped down from the show.", &docs());
        let far = check("Barker loves penguins and jazz festivals.", &docs());
        assert!(near.support > far.support, "{near:?} {far:?}");
        assert_eq!(check("", &docs()).support, 1.0);
    }

    #[test]
    fn a_question_backs_wording_but_not_facts() {
        let mut d = docs();
        let answer = "Barker adored penguins in Paris.";
        let before = check(answer, &d);
        d.add_question("Did Barker adore penguins in Paris?");
        let after = check(answer, &d);
        assert!(after.claims[0].words > before.claims[0].words);
        assert_eq!(after.claims[0].missing, ["Paris"]);
    }
}
