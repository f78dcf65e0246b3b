//! One person, one placeholder, all conversation long. The personal names found anywhere in a
//! request are gathered into people ("Jane Roe" and a later "Jane" are one person: one's
//! words hold the other's); then every mention of each person in every segment — the whole
//! name, or a part of it alone ("Sure, Jane." two turns later) — is found, so all of them get
//! the same replacement and nothing of the name reaches the provider.
//!
//! A part alone is matched as a whole word written as in the name. A part that is also an
//! ordinary word ("Will", "May", "Mark") is matched alone only where it cannot be that word:
//! capitalised, and not at the start of a sentence. A part shared by two people ("Jane" of
//! Jane Roe and Jane Doe) gets a placeholder of its own, restored to the part itself.
//!
//! Cost: nothing without a personal name; otherwise one substring search per name part per
//! segment.

use portcullis_pii::ner::Tagger;
use std::ops::Range;

/// One person: the fullest form of their name seen, and its parts.
#[derive(Debug, Clone)]
struct Person {
    full: String,
    parts: Vec<String>,
}

/// The people named personally in one request.
#[derive(Debug, Clone, Default)]
pub(super) struct People {
    persons: Vec<Person>,
}

/// Words of a name that identify no one on their own.
const TITLES: &str = "mr mrs ms miss mx dr prof sir madam dame lord lady jr sr ii iii iv";
/// Lower-case particles inside names ("Leonardo da Vinci", "van der Berg").
const PARTICLES: &str =
    "de da di do dos das van von der den la le du del della bin binti al el y e";

/// The words of `name` that identify its bearer: no titles, initials or particles.
fn parts(name: &str) -> Vec<String> {
    name.split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
        .filter(|w| {
            let lower = w.to_lowercase();
            let lower = lower.trim_end_matches('.');
            w.chars().filter(|c| c.is_alphabetic()).count() >= 2
                && !TITLES.split_whitespace().any(|t| t == lower)
                && !(w.starts_with(char::is_lowercase)
                    && PARTICLES.split_whitespace().any(|p| p == lower))
        })
        .map(str::to_owned)
        .collect()
}

impl People {
    /// The people behind `names` (the personal names of a request, in order of appearance).
    pub(super) fn gather<'a>(names: impl Iterator<Item = &'a str>) -> People {
        let mut persons: Vec<Person> = Vec::new();
        for name in names {
            let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
            let words = parts(&name);
            if words.is_empty() {
                continue;
            }
            let within = |a: &[String], b: &[String]| a.iter().all(|w| b.contains(w));
            let same: Vec<usize> = (0..persons.len())
                .filter(|i| {
                    within(&words, &persons[*i].parts) || within(&persons[*i].parts, &words)
                })
                .collect();
            match same.as_slice() {
                [i] => {
                    let p = &mut persons[*i];
                    if words.len() > p.parts.len() {
                        p.full = name;
                        p.parts = words;
                    }
                }
                [] => persons.push(Person {
                    full: name,
                    parts: words,
                }),
                // Words of more than one person: this mention is someone of its own.
                _ if persons.iter().any(|p| p.full == name) => {}
                _ => persons.push(Person {
                    full: name,
                    parts: words,
                }),
            }
        }
        // A part two people share stands for neither when alone: it becomes its own person.
        let mut shared: Vec<String> = Vec::new();
        for (i, p) in persons.iter().enumerate() {
            for w in &p.parts {
                let elsewhere = persons
                    .iter()
                    .enumerate()
                    .any(|(j, q)| j != i && q.parts.len() > 1 && q.parts.contains(w));
                if elsewhere && p.parts.len() > 1 && !shared.contains(w) {
                    shared.push(w.clone());
                }
            }
        }
        for w in shared {
            for p in persons.iter_mut().filter(|p| p.parts.len() > 1) {
                p.parts.retain(|x| *x != w);
            }
            if !persons.iter().any(|p| p.full == w) {
                persons.push(Person {
                    parts: vec![w.clone()],
                    full: w,
                });
            }
        }
        People { persons }
    }

    /// Whether no one was named personally.
    pub(super) fn is_empty(&self) -> bool {
        self.persons.is_empty()
    }

    /// The name a person's placeholder stands for (the fullest form seen).
    pub(super) fn full(&self, person: usize) -> &str {
        self.persons.get(person).map_or("", |p| p.full.as_str())
    }

    /// Every mention of these people in `text` — whole names first, then parts alone — as
    /// (range, person), in text order and not overlapping one another.
    /// `named` are the spans the scan itself took for names: there an ordinary word is a
    /// name wherever it stands.
    pub(super) fn mentions(
        &self,
        text: &str,
        named: &[Range<usize>],
    ) -> Vec<(Range<usize>, usize)> {
        let mut found: Vec<(Range<usize>, usize)> = Vec::new();
        for (i, p) in self.persons.iter().enumerate() {
            for r in occurrences(text, &p.full, false) {
                found.push((r, i));
            }
            for w in &p.parts {
                let ordinary = Tagger::builtin().ordinary_word(w);
                for r in occurrences(text, w, ordinary) {
                    found.push((r, i));
                }
                if ordinary {
                    for r in occurrences(text, w, false) {
                        if named.contains(&r) {
                            found.push((r, i));
                        }
                    }
                }
            }
        }
        found.sort_by(|a, b| (a.0.start, b.0.end).cmp(&(b.0.start, a.0.end)));
        let mut kept: Vec<(Range<usize>, usize)> = Vec::with_capacity(found.len());
        for (r, i) in found {
            if kept.last().is_none_or(|(k, _)| k.end <= r.start) {
                kept.push((r, i));
            }
        }
        kept
    }
}

/// Where `form` occurs in `text` as a whole word (not inside an e-mail address, an identifier
/// or a path); an `ordinary` word only capitalised and not opening a sentence. A lower-case
/// form (a name from lower-case text) is also found capitalised.
fn occurrences(text: &str, form: &str, ordinary: bool) -> Vec<Range<usize>> {
    let mut forms = vec![form.to_owned()];
    if form.starts_with(char::is_lowercase) {
        let mut c = form.chars();
        if let Some(first) = c.next() {
            forms.push(first.to_uppercase().chain(c).collect());
        }
    }
    let mut out = Vec::new();
    for f in &forms {
        for (at, m) in text.match_indices(f.as_str()) {
            let r = at..at + m.len();
            if whole_word(text, &r) && !(ordinary && !(capitalised(m) && mid_sentence(text, at))) {
                out.push(r);
            }
        }
    }
    out
}

fn capitalised(w: &str) -> bool {
    w.starts_with(char::is_uppercase)
}

/// Whether `r` is a whole word: no letter, digit or joiner of e-mails, identifiers and paths
/// on either side (a full stop after it may end a sentence).
fn whole_word(text: &str, r: &Range<usize>) -> bool {
    let before = text[..r.start].chars().next_back();
    let mut after = text[r.end..].chars();
    let next = after.next();
    let joined_before =
        before.is_some_and(|c| c.is_alphanumeric() || matches!(c, '@' | '.' | '_' | '-' | '/'));
    let joined_after = match next {
        Some('.') => after.next().is_some_and(char::is_alphanumeric),
        Some(c) => c.is_alphanumeric() || matches!(c, '@' | '_' | '-' | '/'),
        None => false,
    };
    !joined_before && !joined_after
}

/// Whether the word at `at` is inside a sentence (not its first word; a title's full stop,
/// "Ms. Roe", ends no sentence).
fn mid_sentence(text: &str, at: usize) -> bool {
    let before = text[..at].trim_end();
    match before.chars().next_back() {
        None => false,
        Some('.') => {
            let word = before[..before.len() - 1]
                .rsplit(|c: char| !c.is_alphabetic())
                .next()
                .unwrap_or_default()
                .to_lowercase();
            TITLES.split_whitespace().any(|t| t == word)
        }
        Some(c) => !matches!(c, '!' | '?' | ':' | '\n' | '"' | '“'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mentioned<'p, 't>(people: &'p People, text: &'t str) -> Vec<(&'t str, &'p str)> {
        people
            .mentions(text, &[])
            .into_iter()
            .map(|(r, i)| (&text[r], people.full(i)))
            .collect()
    }

    #[test]
    fn parts_of_a_name_are_the_same_person() {
        let p = People::gather(["Jane Roe", "Jane"].into_iter());
        assert_eq!(p.persons.len(), 1);
        assert_eq!(
            mentioned(
                &p,
                "Sure, Jane. Ms. Roe wrote to jane.roe@example.org, Jane Roe."
            ),
            vec![
                ("Jane", "Jane Roe"),
                ("Roe", "Jane Roe"),
                ("Jane Roe", "Jane Roe")
            ]
        );
        let p = People::gather(["Jane", "Jane Roe"].into_iter());
        assert_eq!(p.full(0), "Jane Roe", "the fullest form wins");
    }

    #[test]
    fn titles_initials_and_particles_are_not_parts() {
        assert_eq!(parts("Dr. Jane Q. Roe"), vec!["Jane", "Roe"]);
        assert_eq!(parts("Ludwig van Beethoven"), vec!["Ludwig", "Beethoven"]);
        assert_eq!(
            parts("José Müller-Lüdenscheidt"),
            vec!["José", "Müller-Lüdenscheidt"]
        );
    }

    #[test]
    fn an_ordinary_word_is_a_name_only_where_it_cannot_be_the_word() {
        let p = People::gather(["Will Turner"].into_iter());
        assert_eq!(
            mentioned(&p, "Will you ask Will? It will rain."),
            vec![("Will", "Will Turner")]
        );
    }

    #[test]
    fn a_part_two_people_share_is_its_own() {
        let p = People::gather(["Jane Roe", "Jane Doe"].into_iter());
        assert_eq!(
            mentioned(&p, "Jane Roe, Jane Doe and Jane"),
            vec![
                ("Jane Roe", "Jane Roe"),
                ("Jane Doe", "Jane Doe"),
                ("Jane", "Jane")
            ]
        );
    }
}
