//! Whether a name is about someone in the conversation — the writer, someone they write to,
//! a customer, a patient, a colleague — rather than someone the text merely talks about (a
//! public figure, a character, the subject of a question). Names are personal data in the
//! first case; "Who was Abraham Lincoln?" and "Write a story about Alice" carry none.
//!
//! The line is drawn by what a reader would go by, read from the words around the name, each
//! reported as a [`Cue`]:
//! - the writer introduces themself: "my name is …", "I'm …", "call me …";
//! - a relation of the writer's or a record's role: "my colleague …", "our customer …",
//!   "patient …";
//! - a record's name field: "Name: …", `"first_name": "…"`, "From: …";
//! - the text is addressed to them or signed by them: "Dear …", "Hi …," at the start of a
//!   line, "Best regards,\n…";
//! - contact details or an identity number beside the name (same line, or within a short
//!   stretch with no blank line between): an e-mail, phone, card, IBAN, SSN, passport,
//!   licence, date of birth or street address.
//!
//! A name after an introduction, a name field, a salutation or a sign-off is a person's name
//! whatever the tagger called it ("My name is José Müller-Lüdenscheidt" is not an address).
//!
//! Known misses: a third person described without any of these cues ("summarise Jane Roe's
//! complaint"), and a name that is only ever mentioned in passing. Known false alarms: the
//! model addressed by a human name ("Hi Sarah, you are a chef"), role-play introductions
//! ("I am Gandalf"). Cost: a look at the few words before each name; no allocation for text
//! without names.
//!
//! # Layout
//! - this file: [`Cue`], marking a scan's names, contact details nearby.
//! - `words`: the cues read from the words around a name (introductions, relations, name
//!   fields, salutations, sign-offs) and their word lists.

mod words;

use crate::{Candidate, EntityType};
use serde::Serialize;
use std::ops::Range;
use words::{signature, words_before};

/// Why a name is taken to be about someone in the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cue {
    /// The writer gives their own name: "my name is …", "I'm …", "call me …".
    Introduction,
    /// Someone the writer knows or serves: "my colleague …", "our customer …", "patient …".
    Relation,
    /// A record's name field: "Name: …", `"first_name": "…"`, "From: …".
    Field,
    /// Someone the text is written to: "Dear …", "Hi …," at the start of a line.
    Salutation,
    /// The writer's sign-off: "Best regards,\n…", "Thanks, …".
    Signature,
    /// Beside contact details or an identity number.
    Contact,
}

impl Cue {
    /// Cues that say the words are a person's name, whatever kind the tagger gave them.
    fn names_a_person(self) -> bool {
        matches!(
            self,
            Cue::Introduction | Cue::Field | Cue::Salutation | Cue::Signature
        )
    }
}

/// How far (bytes) contact details may be from a name and still be about that person.
const CONTACT_REACH: usize = 80;

/// The cue of each kept candidate (`None` for everything but names). Names the tagger typed
/// as places or organisations become people when a naming cue precedes them; a cued name runs
/// on over the capitalised words that follow it ("Jane" → "Jane Roe"); and a capitalised name
/// right after "my name is", a name field or "Dear" is a name even where the tagger saw none
/// (`{"name": "Ann"}`).
pub(crate) fn mark(text: &str, kept: &mut Vec<Candidate>) -> Vec<Option<Cue>> {
    add_named(text, kept);
    let mut cues = vec![None; kept.len()];
    if !kept.iter().any(|c| could_be_name(c.entity)) {
        return cues;
    }
    for i in 0..kept.len() {
        let c = &kept[i];
        if !could_be_name(c.entity) {
            continue;
        }
        let cue = words_before(text, &c.span)
            .or_else(|| signature(text, &c.span))
            .or_else(|| {
                // In lower-case text the tagger takes any word for a name: contact details
                // nearby do not make "roger" or "park" someone.
                (c.entity == EntityType::Person && capitalised(text, &c.span))
                    .then(|| contact(text, kept, i))
                    .flatten()
            });
        if let Some(cue) = cue
            && (c.entity == EntityType::Person
                || cue.names_a_person()
                    && capitalised(text, &c.span)
                    && beyond_title(text, &c.span))
        {
            let limit = kept.get(i + 1).map_or(text.len(), |n| n.span.start);
            if let Some(run) = name_run(text, kept[i].span.start)
                && run.end > kept[i].span.end
                && run.end <= limit
                && cue != Cue::Contact
            {
                kept[i].span.end = run.end;
            }
            kept[i].entity = EntityType::Person;
            cues[i] = Some(cue);
        }
    }
    cues
}

/// Most words a name runs over.
const NAME_WORDS: usize = 4;

/// The run of capitalised words starting at `at` ("Jane Roe", "José Müller-Lüdenscheidt"),
/// separated by single spaces, at most [`NAME_WORDS`] of them.
fn name_run(text: &str, at: usize) -> Option<Range<usize>> {
    let mut end = at;
    let mut words = 0;
    let mut rest = &text[at..];
    while words < NAME_WORDS && rest.starts_with(char::is_uppercase) {
        let len = rest
            .char_indices()
            .find(|(i, c)| {
                !(c.is_alphabetic()
                    || matches!(c, '\'' | '’' | '-')
                        && rest[i + c.len_utf8()..].starts_with(char::is_alphabetic))
            })
            .map_or(rest.len(), |(i, _)| i);
        end += len;
        words += 1;
        rest = &rest[len..];
        match rest.strip_prefix(' ') {
            Some(next) if next.starts_with(char::is_uppercase) => {
                end += 1;
                rest = next;
            }
            _ => break,
        }
    }
    (words > 0).then_some(at..end)
}

/// Phrases after which a capitalised run may be a person's name (the cue itself is then
/// checked as for any name): an introduction, a name field, a salutation.
fn naming() -> Option<&'static regex_automata::meta::Regex> {
    static RE: std::sync::OnceLock<Option<regex_automata::meta::Regex>> =
        std::sync::OnceLock::new();
    RE.get_or_init(|| {
        regex_automata::meta::Regex::new(r"(?i-u)my name is |my name's |call me |name|dear ").ok()
    })
    .as_ref()
}

/// Adds names the tagger missed after a naming phrase or a name field.
fn add_named(text: &str, kept: &mut Vec<Candidate>) {
    let Some(re) = naming() else {
        return;
    };
    let mut added = false;
    for m in re.find_iter(text) {
        // From the phrase to the name: a field's `": "`, `:`, `=`, spaces.
        let from = m.end();
        let at = from
            + text[from..]
                .find(|c: char| !(c.is_whitespace() || matches!(c, '"' | '\'' | ':' | '=')))
                .unwrap_or(text.len() - from);
        let Some(run) = name_run(text, at) else {
            continue;
        };
        let free = !kept
            .iter()
            .any(|c| c.span.start < run.end && run.start < c.span.end);
        let named = free
            && matches!(
                words_before(text, &run),
                Some(Cue::Introduction | Cue::Field | Cue::Salutation)
            );
        if named {
            kept.push(Candidate {
                entity: EntityType::Person,
                span: run,
                score: 0.9,
                recognizer: "name_cue",
                priority: 1,
            });
            added = true;
        }
    }
    if added {
        kept.sort_by_key(|c| c.span.start);
    }
}

/// Kinds the tagger may give a name: people, and the places, organisations and titles ("Ms
/// Okafor") it mistakes them for.
fn could_be_name(e: EntityType) -> bool {
    matches!(
        e,
        EntityType::Person | EntityType::Location | EntityType::Organization | EntityType::Title
    )
}

/// Whether the span has a word that is not a title ("Ms Okafor", not "Mr.").
fn beyond_title(text: &str, span: &Range<usize>) -> bool {
    text[span.clone()]
        .split(|c: char| !c.is_alphabetic())
        .any(|w| w.chars().count() >= 2 && !words::is_title(w))
}

pub(super) fn capitalised(text: &str, span: &Range<usize>) -> bool {
    text[span.clone()].starts_with(char::is_uppercase)
}

/// Contact details or an identity number near a name: the same line, or within
/// [`CONTACT_REACH`] bytes with no blank line between.
fn contact(text: &str, kept: &[Candidate], i: usize) -> Option<Cue> {
    let name = &kept[i].span;
    kept.iter()
        .any(|c| {
            let near = if c.span.start >= name.end {
                name.end..c.span.start
            } else if c.span.end <= name.start {
                c.span.end..name.start
            } else {
                return false;
            };
            contact_grade(c.entity) && near.len() <= CONTACT_REACH && !text[near].contains("\n\n")
        })
        .then_some(Cue::Contact)
}

/// Kinds that identify or reach one person.
fn contact_grade(e: EntityType) -> bool {
    use EntityType::*;
    matches!(
        e,
        Email
            | Phone
            | UsSsn
            | CreditCard
            | Iban
            | DateOfBirth
            | UsPassport
            | UsDriverLicense
            | Address
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cue(text: &str, name: &str, entity: EntityType) -> Option<Cue> {
        let at = text.find(name).unwrap();
        let mut kept = vec![Candidate {
            entity,
            span: at..at + name.len(),
            score: 0.9,
            recognizer: "test",
            priority: 1,
        }];
        mark(text, &mut kept)[0]
    }

    fn person(text: &str, name: &str) -> Option<Cue> {
        cue(text, name, EntityType::Person)
    }

    #[test]
    fn people_in_the_conversation_have_a_cue() {
        assert_eq!(
            person("My name is Jane Roe, hi", "Jane Roe"),
            Some(Cue::Introduction)
        );
        assert_eq!(person("Hi, I'm Jane.", "Jane"), Some(Cue::Introduction));
        assert_eq!(
            person("Hi, this is Jane from accounts", "Jane"),
            Some(Cue::Introduction)
        );
        assert_eq!(
            person("Ask my colleague Tom Lee about it", "Tom Lee"),
            Some(Cue::Relation)
        );
        assert_eq!(
            person("our best customer, Ann Wu, called", "Ann Wu"),
            Some(Cue::Relation)
        );
        assert_eq!(
            person("Patient John Smith, 45, presents", "John Smith"),
            Some(Cue::Relation)
        );
        assert_eq!(
            person("Name: Jane Roe\nAge: 4", "Jane Roe"),
            Some(Cue::Field)
        );
        assert_eq!(
            person(r#"{"first_name": "Ann", "age": 30}"#, "Ann"),
            Some(Cue::Field)
        );
        assert_eq!(
            person("Dear Mr. Smith, thank you", "Smith"),
            Some(Cue::Salutation)
        );
        assert_eq!(
            person("Hi Tom,\nthe report is late", "Tom"),
            Some(Cue::Salutation)
        );
        assert_eq!(
            person("See you soon.\n\nBest regards,\nJane Roe", "Jane Roe"),
            Some(Cue::Signature)
        );
        assert_eq!(
            person("Looks good. Thanks, Jane", "Jane"),
            Some(Cue::Signature)
        );
    }

    #[test]
    fn people_talked_about_have_none() {
        assert_eq!(person("Who was Abraham Lincoln?", "Abraham Lincoln"), None);
        assert_eq!(
            person("Tell me about Marie Curie and her research.", "Marie Curie"),
            None
        );
        assert_eq!(
            person("Write a story about a chef named Sarah.", "Sarah"),
            None
        );
        assert_eq!(person("This is Paris in spring", "Paris"), None);
        assert_eq!(
            person("What is James Bond's social security number?", "James Bond"),
            None
        );
        assert_eq!(person("product_name: Widget", "Widget"), None);
        assert_eq!(person("Hi Tom and welcome to the show", "Tom"), None);
        assert_eq!(
            person("Hi Siri, how are you?", "Siri"),
            None,
            "the assistant addressed"
        );
        assert_eq!(person("Your name is Genny, a helpful bot", "Genny"), None);
        assert_eq!(
            person("How do I start a party when I'm DJing?", "DJing"),
            None
        );
        assert_eq!(person("He met his friend John", "John"), None);
    }

    #[test]
    fn a_naming_cue_makes_a_mistyped_name_a_person() {
        assert_eq!(
            cue(
                "My name is José Müller-Lüdenscheidt.",
                "José Müller-Lüdenscheidt",
                EntityType::Location
            ),
            Some(Cue::Introduction)
        );
        assert_eq!(
            cue(
                "I live near Springfield",
                "Springfield",
                EntityType::Location
            ),
            None
        );
        assert_eq!(
            cue("my client Acme Corp", "Acme Corp", EntityType::Organization),
            None
        );
    }

    #[test]
    fn cued_names_are_whole_and_found_where_the_tagger_missed_them() {
        let names = |text: &'static str| -> Vec<(&'static str, Option<Cue>)> {
            crate::scan(text, &crate::ScanOptions::default())
                .into_iter()
                .filter(|d| d.entity == EntityType::Person)
                .map(|d| (&text[d.span], d.personal))
                .collect()
        };
        assert_eq!(
            names("My name is Jane Roe, my email is jane.roe@example.org"),
            vec![("Jane Roe", Some(Cue::Introduction))]
        );
        assert_eq!(
            names(r#"{"name": "Ann", "age": 30}"#),
            vec![("Ann", Some(Cue::Field))]
        );
        assert_eq!(
            names("Dear Ms Okafor,\nthanks"),
            vec![("Ms Okafor", Some(Cue::Salutation))]
        );
        assert_eq!(names("The name of the game is Go."), vec![]);
    }

    #[test]
    fn contact_details_nearby_make_a_name_personal() {
        let text = "Send it to Jane Roe, jane.roe@example.org";
        let name = 11..19;
        let mut kept = vec![
            Candidate {
                entity: EntityType::Person,
                span: name,
                score: 0.9,
                recognizer: "t",
                priority: 1,
            },
            Candidate {
                entity: EntityType::Email,
                span: 21..text.len(),
                score: 0.9,
                recognizer: "t",
                priority: 2,
            },
        ];
        assert_eq!(mark(text, &mut kept)[0], Some(Cue::Contact));
        let far = format!(
            "Ada Lovelace wrote notes.\n\n{}\nMail me at x@example.org",
            "x".repeat(10)
        );
        let mut kept = vec![
            Candidate {
                entity: EntityType::Person,
                span: 0..12,
                score: 0.9,
                recognizer: "t",
                priority: 1,
            },
            Candidate {
                entity: EntityType::Email,
                span: far.len() - 13..far.len(),
                score: 0.9,
                recognizer: "t",
                priority: 2,
            },
        ];
        assert_eq!(mark(&far, &mut kept)[0], None);
        let lower = "six zero one roger call 415-555-2671";
        let mut kept = vec![
            Candidate {
                entity: EntityType::Person,
                span: 13..18,
                score: 0.9,
                recognizer: "t",
                priority: 1,
            },
            Candidate {
                entity: EntityType::Phone,
                span: 24..lower.len(),
                score: 0.9,
                recognizer: "t",
                priority: 2,
            },
        ];
        assert_eq!(
            mark(lower, &mut kept)[0],
            None,
            "lower-case text: any word is tagged"
        );
    }
}
