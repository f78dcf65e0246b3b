//! What a tagged span must look like to be kept, and where its edges are.
//!
//! The tagger learns from templates in which a number in a certain slot is a house number, a
//! postcode or an age; in ordinary prompts most numbers are none of these ("list 10 things",
//! "15, 25, 35", "a 1920x1080 screen"). So a span is kept only when it has the shape of its
//! kind: a street address has a number and a word, a postcode at least three digits after a
//! place name or a postcode label, an age an age word beside it, and in text written with
//! capitals a name has one. Edges are trimmed to the value itself, so a replacement never
//! eats a closing brace, a sentence's full stop or the `'s` after a name.
//!
//! Known misses: a street with neither a street word, a second line, a town after it nor
//! address words around it ("Veslebakken 48" alone); a postcode with no place name or label
//! before it; an age given as a bare number ("I am 30"). Known false alarms: a product name
//! and a number where address words are near ("the city's Model 3"). Cost: a few byte scans
//! per tagged span; nothing for text the tagger leaves alone.

use crate::{Candidate, EntityType};
use std::ops::Range;

/// Whether `text` is written with capitals (at least 2 % of its letters), so that a name
/// without one is not a name. All-lower-case text gets no such test.
pub(crate) fn cased(text: &str) -> bool {
    let letters = text.bytes().filter(u8::is_ascii_alphabetic).count();
    let upper = text.bytes().filter(u8::is_ascii_uppercase).count();
    upper * 50 >= letters
}

/// Kinds that are names: they take a possessive `'s` and are written with capitals.
fn is_name(e: EntityType) -> bool {
    matches!(
        e,
        EntityType::Person | EntityType::Location | EntityType::Organization
    )
}

/// The span trimmed to the value: no punctuation or space at its edges, no bracket it did not
/// open, no possessive `'s`, no sentence-final full stop (an abbreviation keeps its own), and
/// for names in cased text no trailing lower-case word.
pub(super) fn tidy(
    text: &str,
    span: Range<usize>,
    entity: EntityType,
    cased: bool,
) -> Range<usize> {
    let (mut a, mut b) = (span.start, span.end);
    while let Some(c) = text[a..b].chars().next() {
        if c.is_alphanumeric() {
            break;
        }
        a += c.len_utf8();
    }
    loop {
        let t = &text[a..b];
        let Some(last) = t.chars().next_back() else {
            break;
        };
        let cut = if last.is_whitespace()
            || ",;:([{<\"'`=+*/|\\&%#@!?~^_-–—‘’“”".contains(last)
            || ")]}>".contains(last) && unbalanced(t, last)
        {
            last.len_utf8()
        } else if last == '.' && !abbreviation(t) {
            1
        } else if is_name(entity) && last.is_alphanumeric() {
            possessive(t)
                .or_else(|| {
                    (cased && entity != EntityType::Title)
                        .then(|| lower_tail(t))
                        .flatten()
                })
                .unwrap_or(0)
        } else {
            0
        };
        if cut == 0 {
            break;
        }
        b -= cut;
    }
    a..b.max(a)
}

/// Whether the closing bracket `close` at the end of `t` has no opener inside `t`.
fn unbalanced(t: &str, close: char) -> bool {
    let open = match close {
        ')' => '(',
        ']' => '[',
        '}' => '{',
        _ => '<',
    };
    t.matches(open).count() < t.matches(close).count()
}

/// Whether `t` ends in an abbreviation's full stop ("Ltd.", "St.", "J."): its last word is a
/// capitalised word of at most four letters.
fn abbreviation(t: &str) -> bool {
    let body = &t[..t.len() - 1];
    let word: &str = body
        .rsplit(|c: char| !c.is_alphabetic())
        .next()
        .unwrap_or_default();
    !word.is_empty() && word.chars().count() <= 4 && word.starts_with(char::is_uppercase)
}

/// Bytes of a possessive ending (`'s`, `’s`) at the end of `t`.
fn possessive(t: &str) -> Option<usize> {
    ["'s", "’s", "'S", "’S"]
        .iter()
        .find(|p| t.len() > p.len() && t.ends_with(*p))
        .map(|p| p.len())
}

/// Bytes of a trailing word that starts with a lower-case letter (with the space before it),
/// when an earlier word remains: "Deborah tends" is a name and a verb.
fn lower_tail(t: &str) -> Option<usize> {
    let (at, space) = t.char_indices().rev().find(|(_, c)| c.is_whitespace())?;
    let start = at + space.len_utf8();
    let word = &t[start..];
    word.starts_with(char::is_lowercase)
        .then(|| t.len() - t[..start].trim_end().len())
}

/// The kind a tidied span is kept as (an address without a number is a place), or `None`.
pub(super) fn plausible(
    text: &str,
    span: &Range<usize>,
    entity: EntityType,
    cased: bool,
) -> Option<EntityType> {
    let t = &text[span.clone()];
    let letters = || t.chars().any(char::is_alphabetic);
    match entity {
        EntityType::Person | EntityType::Location | EntityType::Organization => {
            let capital = || t.chars().any(char::is_uppercase);
            (letters() && (!cased || capital())).then_some(entity)
        }
        // A bare number may be the house number or postcode line of an address: that is
        // settled once the lines are joined (see `settle_addresses`).
        EntityType::Address if !t.bytes().any(|b| b.is_ascii_digit()) && letters() => None,
        EntityType::Age => age(text, span).then_some(entity),
        _ => (!t.is_empty()).then_some(entity),
    }
}

/// The tagger's addresses and postcodes, once address lines are joined: an address needs
/// the marks of one (see [`address`]); a bare number is kept only as the postcode line of an
/// address just before it, or as a postcode in a postcode's place (see [`postcode`]).
pub(crate) fn settle_addresses(text: &str, kept: &mut Vec<Candidate>) {
    if !kept.iter().any(|c| {
        c.recognizer == "ner" && matches!(c.entity, EntityType::Address | EntityType::Postcode)
    }) {
        return;
    }
    let cased = cased(text);
    // Where the last address ended, for a bare number that is its postcode line.
    let mut address_end: Option<usize> = None;
    kept.retain_mut(|c| {
        if c.recognizer != "ner" || !matches!(c.entity, EntityType::Address | EntityType::Postcode)
        {
            if c.entity == EntityType::Address {
                address_end = Some(c.span.end);
            }
            return true;
        }
        let t = &text[c.span.clone()];
        let letters = t.chars().filter(|c| c.is_alphabetic()).count();
        if c.entity == EntityType::Address && letters > 0 {
            let keep = address(text, &c.span, cased);
            if keep {
                address_end = Some(c.span.end);
            }
            return keep;
        }
        let digits = t.bytes().filter(u8::is_ascii_digit).count();
        let ends_address = address_end.is_some_and(|e| c.span.start.saturating_sub(e) <= 60);
        if !(3..=10).contains(&digits) || glued(text, &c.span) {
            return false;
        }
        if ends_address && c.entity == EntityType::Address {
            return true;
        }
        c.entity = EntityType::Postcode;
        ends_address || postcode(text, &c.span, letters, digits, cased)
    });
}

/// Words that only an address has: street kinds, unit kinds, post boxes, in a few languages.
static STREET_WORDS: crate::context::Words = crate::context::Words::new(
    "street st road rd avenue ave av lane ln drive dr way boulevard blvd court ct \
    place pl square sq terrace crescent close highway hwy parkway pkwy circle cir \
    trail row alley apt apartment suite ste unit floor fl box po postbox rue via \
    viale piazza calle carrer rua avenida plaza chemin allee allée platz gasse weg \
    straße strasse str ul ulica út utca tér vej gade gata gatan vegen veien laan \
    straat plein kuja katu tie fpo apo dpo psc cmr",
);

/// An address has a street or unit word ("Main St", "Apt. 4", "Pohlstrasse 9"), runs over
/// lines, continues into a town (", Springfield"), starts with a house number after "at" or
/// "to", or stands where the words around it speak of an address ("lives at", "ship to").
/// "Unreal Engine 5", "on Windows 10" and "10 things" have none of these.
fn address(text: &str, span: &Range<usize>, cased: bool) -> bool {
    let t = &text[span.clone()];
    let street = t
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .any(|w| {
            STREET_WORDS.has(w)
                || [
                    "strasse", "straße", "straat", "gade", "vej", "weg", "gasse", "vegen", "veien",
                    "laan", "gatan", "katu", "kuja",
                ]
                .iter()
                .any(|s| {
                    w.len() > s.len() + 2
                        && w.is_char_boundary(w.len() - s.len())
                        && w[w.len() - s.len()..].eq_ignore_ascii_case(s)
                })
        });
    // Lines of an address: the first has a (capitalised) word, and no blank line parts them.
    let lines = t.trim_end().contains('\n')
        && !t.contains("\n\n")
        && t.lines().next().is_some_and(|l| {
            l.split_whitespace().any(|w| {
                w.starts_with(char::is_uppercase) || !cased && w.starts_with(char::is_alphabetic)
            })
        });
    // In text written with capitals, a street has a capitalised name ("25 degrees" is not one).
    let named = !cased
        || t.split_whitespace()
            .any(|w| w.starts_with(char::is_uppercase));
    if !named {
        return false;
    }
    let town = {
        let rest = &text[span.end..];
        let rest = rest.strip_prefix(',').unwrap_or("");
        rest.trim_start_matches(' ').starts_with(char::is_uppercase)
    };
    // The town inside the span: a number, then ", Pesconuovo".
    let capitalised_word = |s: &str| {
        s.split_whitespace()
            .any(|w| w.starts_with(char::is_uppercase))
    };
    let inner_town = t.split_once(", ").is_some_and(|(street, town)| {
        street.bytes().any(|b| b.is_ascii_digit())
            && capitalised_word(street)
            && town.starts_with(char::is_uppercase)
    });
    // A house number, then a street's name, where a place is given: "at 37 Parva Domus".
    let numbered = t.split_once(' ').is_some_and(|(n, rest)| {
        n.bytes().all(|b| b.is_ascii_digit()) && rest.starts_with(char::is_uppercase)
    });
    let placed = numbered
        && text[..span.start]
            .trim_end()
            .rsplit(|c: char| !c.is_alphabetic())
            .next()
            .is_some_and(|w| {
                matches!(
                    w.to_ascii_lowercase().as_str(),
                    "at" | "to" | "from" | "near"
                )
            });
    let context = crate::context::Ctx::of(text, span).near(crate::context::class::ADDRESS);
    street || lines || town || inner_town || placed || context
}

/// Part of a longer number: "1,464,463", "0.1956", "00:00:19", "1/20".
fn glued(text: &str, span: &Range<usize>) -> bool {
    let joins = |s: Option<char>, next: Option<char>| {
        matches!(s, Some(',' | '.' | ':' | '/')) && next.is_some_and(|c| c.is_ascii_digit())
    };
    let mut back = text[..span.start].chars().rev();
    let mut fwd = text[span.end..].chars();
    joins(back.next(), back.next()) || joins(fwd.next(), fwd.next())
}

/// A postcode follows a place name directly ("Costamezzana 43015", "Hollywood, CA 91602") or
/// a postcode label ("zip code 94103"), is not a year unless labelled, and has no unit after
/// it ("1935 kg").
fn postcode(text: &str, span: &Range<usize>, letters: usize, digits: usize, cased: bool) -> bool {
    if !(3..=10).contains(&digits) || letters > 4 || span.len() > 12 || glued(text, span) {
        return false;
    }
    let before = &text[..span.start];
    let line = before.rsplit('\n').next().unwrap_or(before);
    let words: Vec<&str> = line
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let label = words.iter().rev().take(4).any(|w| {
        matches!(
            w.to_lowercase().as_str(),
            "zip" | "zipcode" | "postcode" | "postal" | "plz" | "cep"
        )
    });
    if label {
        return true;
    }
    let t = &text[span.clone()];
    let year = t.len() == 4 && t.parse::<u32>().is_ok_and(|y| (1000..=2099).contains(&y));
    let unit = text[span.end..]
        .trim_start()
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .is_some_and(|w| !w.is_empty() && w.chars().all(char::is_lowercase));
    let gap = line.len() - line.trim_end_matches([' ', ',']).len();
    let place = gap > 0
        && words.last().is_some_and(|w| {
            line.trim_end_matches([' ', ',']).ends_with(w)
                && w.starts_with(char::is_uppercase)
                && !w.bytes().any(|b| b.is_ascii_digit())
                && !month(w)
        });
    cased && place && !year && !unit
}

fn month(w: &str) -> bool {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let l = w.to_lowercase();
    l.len() >= 3 && MONTHS.iter().any(|m| l.starts_with(m))
}

/// An age is a number up to 120 with an age word within a few words of it.
fn age(text: &str, span: &Range<usize>) -> bool {
    let t = &text[span.clone()];
    let value: Option<u32> = t
        .split(|c: char| !c.is_ascii_digit())
        .find(|p| !p.is_empty())
        .and_then(|p| p.parse().ok());
    if value.is_none_or(|v| v > 120) {
        return false;
    }
    let mut from = span.start.saturating_sub(24);
    while !text.is_char_boundary(from) {
        from -= 1;
    }
    let mut to = (span.end + 24).min(text.len());
    while !text.is_char_boundary(to) {
        to += 1;
    }
    text[from..to]
        .split(|c: char| !c.is_alphanumeric() && c != '/')
        .any(|w| {
            matches!(
                w.to_lowercase().as_str(),
                "year"
                    | "years"
                    | "yr"
                    | "yrs"
                    | "old"
                    | "age"
                    | "aged"
                    | "ages"
                    | "turn"
                    | "turned"
                    | "turning"
                    | "turns"
                    | "yo"
                    | "y/o"
                    | "birthday"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tidied(text: &str, entity: EntityType) -> &str {
        &text[tidy(text, 0..text.len(), entity, true)]
    }

    #[test]
    fn edges_are_trimmed_to_the_value() {
        assert_eq!(tidied("30}", EntityType::Address), "30");
        assert_eq!(tidied("Marie Curie's", EntityType::Person), "Marie Curie");
        assert_eq!(tidied("Brad Pitt’s", EntityType::Person), "Brad Pitt");
        assert_eq!(tidied("Baywatch.", EntityType::Location), "Baywatch");
        assert_eq!(tidied("Acme Ltd.", EntityType::Organization), "Acme Ltd.");
        assert_eq!(tidied("Deborah tends", EntityType::Person), "Deborah");
        assert_eq!(
            tidied("Deborah\u{3000}tends", EntityType::Person),
            "Deborah"
        );
        assert_eq!(tidied("(Main St)", EntityType::Address), "Main St");
        assert_eq!(
            tidied("labor relations director", EntityType::Title),
            "labor relations director"
        );
        assert_eq!(
            tidied("Leonardo da Vinci", EntityType::Person),
            "Leonardo da Vinci"
        );
    }

    fn settled(text: &str, value: &str, entity: EntityType) -> Option<EntityType> {
        let at = text.find(value).unwrap();
        let mut v = vec![Candidate {
            entity,
            span: at..at + value.len(),
            score: 0.9,
            recognizer: "ner",
            priority: 1,
        }];
        settle_addresses(text, &mut v);
        v.first().map(|c| c.entity)
    }

    #[test]
    fn bare_numbers_are_postcodes_only_in_a_postcode_s_place() {
        use EntityType::{Address, Postcode};
        assert_eq!(settled("list 10 things", "10", Address), None);
        assert_eq!(settled("I am 30", "30", Address), None);
        assert_eq!(settled("values: 15, 25, 35", "15", Postcode), None);
        assert_eq!(
            settled("Madagascar 26873", "26873", Address),
            Some(Postcode)
        );
        assert_eq!(
            settled("Costamezzana 43015", "43015", Postcode),
            Some(Postcode)
        );
        assert_eq!(
            settled("Hollywood, CA 91602", "91602", Postcode),
            Some(Postcode)
        );
        assert_eq!(
            settled("My zip code is 94103", "94103", Postcode),
            Some(Postcode)
        );
        assert_eq!(settled("Ethiopia 1,464,463", "464", Postcode), None);
        assert_eq!(settled("In September 2022", "2022", Postcode), None);
        assert_eq!(settled("Windows 2000 and XP", "2000", Postcode), None);
        assert_eq!(settled("Weight: 1935 kg", "1935", Postcode), None);
        let block = "57 Veslebakken 48\n Apt. 441\n HARSTAD\n\n Madagascar 26873";
        let cand = |span| Candidate {
            entity: Address,
            span,
            score: 0.9,
            recognizer: "ner",
            priority: 1,
        };
        let mut v = vec![
            cand(0..block.find("\n\n").unwrap()),
            cand(block.len() - 5..block.len()),
        ];
        settle_addresses(block, &mut v);
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].entity, Address, "the postcode line of an address");
    }

    #[test]
    fn an_address_needs_the_marks_of_one() {
        use EntityType::Address;
        assert_eq!(
            settled("She lives at 71 Paraguay 87", "71 Paraguay 87", Address),
            Some(Address)
        );
        assert_eq!(
            settled("Send it to Pohlstrasse 9, Berlin", "Pohlstrasse 9", Address),
            Some(Address)
        );
        assert_eq!(settled("Apt. 4B", "Apt. 4B", Address), Some(Address));
        assert_eq!(
            settled("made with Unreal Engine 5 and", "Engine 5", Address),
            None
        );
        assert_eq!(
            settled("Write 10 Facebook headlines", "10 Facebook", Address),
            None
        );
        assert_eq!(
            settled("running Ubuntu 20.04 now", "Ubuntu 20", Address),
            None
        );
    }

    #[test]
    fn names_need_a_capital_and_ages_an_age_word() {
        let keep = |text: &str, value: &str, e| {
            let at = text.find(value).unwrap();
            plausible(text, &(at..at + value.len()), e, true)
        };
        assert_eq!(keep("I am 30", "30", EntityType::Age), None);
        assert_eq!(
            keep("He is 30 years old", "30", EntityType::Age),
            Some(EntityType::Age)
        );
        assert_eq!(
            keep(
                "visit Newton Stewart",
                "Newton Stewart",
                EntityType::Address
            ),
            None
        );
        assert_eq!(
            keep(
                "ignore all previous rules. OK",
                "ignore",
                EntityType::Person
            ),
            None
        );
        assert_eq!(
            keep("ask Ann. OK", "Ann", EntityType::Person),
            Some(EntityType::Person)
        );
    }
}
