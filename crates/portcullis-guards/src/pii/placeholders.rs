//! The gateway's own placeholders (`[PERSON_1]`): numbered so that none is text the client
//! wrote — a client's literal `[PERSON_1]` is then never "restored" into someone's name — and
//! only those issued for this request are left out when an answer is scanned (on a request
//! the vault is empty, so a client cannot hide a key as `[SECRET:sk-…]`).

use portcullis_core::context::Vault;
use std::borrow::Cow;
use std::collections::HashSet;

/// Longest bracketed token looked at (placeholders are far shorter).
const LONGEST: usize = 64;

/// The bracketed tokens of `text` (`[…]`, at most [`LONGEST`] bytes).
fn tokens(text: &str) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    text.match_indices('[').filter_map(move |(open, _)| {
        let rest = &text[open..];
        let mut end = rest.len().min(LONGEST);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let close = rest[..end].find(']')?;
        Some(open..open + close + 1)
    })
}

/// Whether `token` has the shape of a numbered placeholder: `[` capitals and `_`, `_`, digits `]`.
fn numbered(token: &str) -> bool {
    let Some(inner) = token.strip_prefix('[').and_then(|t| t.strip_suffix(']')) else {
        return false;
    };
    inner.rsplit_once('_').is_some_and(|(name, n)| {
        !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
            && !n.is_empty()
            && n.bytes().all(|b| b.is_ascii_digit())
    })
}

/// Hands out placeholders for one verdict: the same original keeps its placeholder, and a
/// new one skips every number whose placeholder the request's text already contains.
#[derive(Debug)]
pub(super) struct Numbering<'v> {
    vault: &'v Vault,
    /// Numbered placeholders written in the text itself (by the client or the model).
    written: HashSet<&'v str>,
    /// Handed out in this verdict: (placeholder, original).
    given: Vec<(String, String)>,
}

impl<'v> Numbering<'v> {
    /// Numbering for a verdict over `texts`, on top of what `vault` already holds.
    pub(super) fn new(texts: impl Iterator<Item = &'v str>, vault: &'v Vault) -> Self {
        let mut written = HashSet::new();
        for t in texts {
            if t.contains('[') {
                written.extend(tokens(t).map(|r| &t[r]).filter(|tok| numbered(tok)));
            }
        }
        Numbering {
            vault,
            written,
            given: Vec::new(),
        }
    }

    /// The placeholder for `original` of kind `kind` (`PERSON`), and whether it is new (the
    /// caller then asks the pipeline to remember it).
    pub(super) fn placeholder(&mut self, kind: &str, original: &str) -> (String, bool) {
        if let Some(p) = self.vault.placeholder_for(original) {
            return (p.to_owned(), false);
        }
        if let Some((p, _)) = self.given.iter().find(|(_, o)| o == original) {
            return (p.clone(), false);
        }
        let prefix = format!("[{kind}_");
        let given = self.given.iter().filter(|(p, _)| p.starts_with(&prefix));
        let mut n = self.vault.count_prefix(&prefix) + given.count() + 1;
        let mut p = format!("{prefix}{n}]");
        while self.written.contains(p.as_str())
            || self.vault.issued(&p)
            || self.given.iter().any(|(g, _)| *g == p)
        {
            n += 1;
            p = format!("{prefix}{n}]");
        }
        self.given.push((p.clone(), original.to_owned()));
        (p, true)
    }
}

/// `text` with the placeholders issued for this request blanked out, byte for byte: the model
/// echoes them and they are not new data. Anything else shaped like a placeholder is scanned
/// like any other text.
pub(super) fn mask_issued<'t>(text: &'t str, vault: &Vault) -> Cow<'t, str> {
    if vault.is_empty() || !text.contains('[') {
        return Cow::Borrowed(text);
    }
    let issued: Vec<std::ops::Range<usize>> = tokens(text)
        .filter(|r| vault.issued(&text[r.clone()]))
        .collect();
    if issued.is_empty() {
        return Cow::Borrowed(text);
    }
    let mut out = text.to_owned();
    for r in issued {
        out.replace_range(r.clone(), &" ".repeat(r.len()));
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_placeholders_skip_what_the_client_wrote() {
        let vault = Vault::default();
        let texts = ["In the template, [PERSON_1] and [EMAIL_1] are placeholders."];
        let mut n = Numbering::new(texts.iter().copied(), &vault);
        assert_eq!(
            n.placeholder("PERSON", "Jane Roe"),
            ("[PERSON_2]".into(), true)
        );
        assert_eq!(
            n.placeholder("PERSON", "Jane Roe"),
            ("[PERSON_2]".into(), false)
        );
        assert_eq!(
            n.placeholder("PERSON", "Ann Lee"),
            ("[PERSON_3]".into(), true)
        );
        assert_eq!(n.placeholder("EMAIL", "a@x.io"), ("[EMAIL_2]".into(), true));
        assert_eq!(n.placeholder("PHONE", "555"), ("[PHONE_1]".into(), true));
    }

    #[test]
    fn a_bracket_before_long_multibyte_text_does_not_split_a_character() {
        let text = format!("[{}’s note] and [PERSON_1]", "é".repeat(40));
        let found: Vec<_> = tokens(&text).map(|r| &text[r]).collect();
        assert_eq!(found, vec!["[PERSON_1]"]);
    }

    #[test]
    fn only_issued_placeholders_are_masked() {
        let mut vault = Vault::default();
        let text = "[PERSON_1] and [SECRET:sk-proj-abc] and [PERSON_2]";
        assert_eq!(
            mask_issued(text, &vault),
            text,
            "an empty vault masks nothing"
        );
        vault.remember("[PERSON_1]".into(), "Jane".into());
        assert_eq!(
            mask_issued(text, &vault),
            "           and [SECRET:sk-proj-abc] and [PERSON_2]"
        );
    }

    #[test]
    fn placeholder_shapes() {
        assert!(numbered("[PERSON_1]") && numbered("[US_SSN_12]"));
        assert!(!numbered("[PERSON]") && !numbered("[EMAIL:3f2a]") && !numbered("[a_1]"));
    }
}
