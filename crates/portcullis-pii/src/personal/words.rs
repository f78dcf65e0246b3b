//! The cues read from the words around a name: an introduction, a relation, a record's name
//! field, a salutation, a sign-off. Word lists are written from general knowledge of how
//! people introduce themselves and write letters and records, not from any data set.

use super::{Cue, capitalised};
use crate::context::Words;
use std::ops::Range;

/// How far back (bytes) the words before a name are read: cues sit right before it.
const LOOK_BACK: usize = 160;

/// The text of `at`'s line before it, at most [`LOOK_BACK`] bytes of it, and whether that is
/// the whole of it (the line starts there).
fn line_before(text: &str, at: usize) -> (&str, bool) {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let mut from = at.saturating_sub(LOOK_BACK);
    while !text.is_char_boundary(from) {
        from -= 1;
    }
    let window = &text[from..at];
    match window.rfind('\n') {
        Some(i) => (&window[i + 1..], true),
        None => (window, from == 0),
    }
}

/// Words of `line` (nearest last), at most `max`, back to a sentence end: one backward pass
/// that stops at the `max`-th word.
fn line_words(line: &str, max: usize) -> Vec<&str> {
    let mut words: Vec<&str> = Vec::with_capacity(max);
    let mut word_end: Option<usize> = None;
    for (i, c) in line.char_indices().rev() {
        if c.is_alphanumeric() || c == '\'' || c == '’' {
            word_end.get_or_insert(i + c.len_utf8());
            continue;
        }
        if let Some(end) = word_end.take() {
            words.push(&line[i + c.len_utf8()..end]);
            if words.len() == max {
                break;
            }
        }
        // A title's full stop ("Mr.") ends no sentence.
        let title_stop = c == '.'
            && TITLES.has(
                line[..i]
                    .rsplit(|c: char| !c.is_alphanumeric())
                    .next()
                    .unwrap_or_default(),
            );
        if matches!(c, '.' | '!' | '?' | ';') && !title_stop {
            word_end = None;
            break;
        }
    }
    if let Some(end) = word_end
        && words.len() < max
    {
        words.push(&line[..end]);
    }
    words.reverse();
    words
}

/// Whether a word is a title.
pub(super) fn is_title(word: &str) -> bool {
    TITLES.has(word)
}

/// Titles between a cue and a name ("my landlord, Mr. Smith").
static TITLES: Words = Words::new("mr mrs ms miss mx dr prof sir madam");

/// Whether two words are the same but for ASCII case and the kind of apostrophe.
fn same(a: &str, b: &str) -> bool {
    let fold = |w: &str| {
        w.chars()
            .map(|c| {
                if c == '’' {
                    '\''
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect::<String>()
    };
    a.eq_ignore_ascii_case(b) || a.contains('’') && fold(a) == b
}

/// Cues in the words right before the name: an introduction, a relation, a name field or a
/// salutation.
pub(super) fn words_before(text: &str, span: &Range<usize>) -> Option<Cue> {
    let (line, whole) = line_before(text, span.start);
    let all = line_words(line, 6);
    let mut n = all.len();
    while n > 0 && TITLES.has(all[n - 1]) {
        n -= 1;
    }
    let w = &all[..n];
    // Compared from the last word back, so most phrases fail on their first comparison.
    let ends = |p: &[&str]| {
        w.len() >= p.len() && w.iter().rev().zip(p.iter().rev()).all(|(a, b)| same(a, b))
    };
    const INTRODUCTIONS: &[&[&str]] = &[
        &["my", "name", "is"],
        &["my", "name's"],
        &["i", "am"],
        &["i'm"],
        &["im"],
        &["call", "me"],
        &["i", "go", "by"],
        &["me", "llamo"],
        &["mi", "nombre", "es"],
        &["je", "m'appelle"],
        &["ich", "heiße"],
        &["ich", "heisse"],
        &["mein", "name", "ist"],
        &["meu", "nome", "é"],
        &["mi", "chiamo"],
    ];
    // The last words of the introductions: most names follow none of them.
    static INTRODUCED_BY: Words =
        Words::new("is name's am i'm im me by llamo es m'appelle heiße heisse ist é chiamo");
    let introduced = w.last().is_some_and(|last| {
        (INTRODUCED_BY.has(last) || last.contains('’')) && INTRODUCTIONS.iter().any(|p| ends(p))
    });
    // "I'm DJing", "I am Running late": after "I am" a word in -ing is what one does.
    let doing = w
        .last()
        .is_some_and(|l| matches!(l.to_ascii_lowercase().as_str(), "am" | "i'm" | "im" | "i’m"))
        && text[span.clone()]
            .split(|c: char| !c.is_alphabetic())
            .next()
            .is_some_and(|first| first.len() >= 5 && first.to_ascii_lowercase().ends_with("ing"));
    if introduced && !doing || this_is(w) {
        return Some(Cue::Introduction);
    }
    if relation(w) {
        return Some(Cue::Relation);
    }
    if field(line) {
        return Some(Cue::Field);
    }
    salutation(text, span, line, whole, all)
}

/// "Hi, this is Jane": after a greeting (not "This is Paris in spring").
fn this_is(w: &[&str]) -> bool {
    let n = w.len();
    n >= 3 && same(w[n - 2], "this") && same(w[n - 1], "is") && GREETINGS.has(w[n - 3])
}

/// People a writer has (with my / our / your, perhaps one word between: "my best friend"), or
/// the role of someone in a record ("patient", "customer") right before the name.
fn relation(w: &[&str]) -> bool {
    static RELATIONS: Words = Words::new(
        "wife husband partner spouse boyfriend girlfriend fiancé fiance fiancée fiancee \
    son daughter child kid baby mother father mom mum dad parent brother sister \
    sibling cousin aunt uncle niece nephew grandmother grandfather grandma grandpa \
    grandson granddaughter friend colleague coworker co-worker boss manager \
    supervisor employee employer neighbour neighbor roommate flatmate housemate \
    landlord landlady tenant client customer patient student pupil teacher tutor \
    doctor therapist lawyer attorney accountant assistant secretary intern classmate \
    teammate mentor coach guest caller contact ex crush date lead report recruiter \
    candidate applicant member",
    );
    static ROLES: Words = Words::new(
        "patient customer client employee applicant tenant cardholder policyholder \
    claimant beneficiary passenger subscriber caller resident inmate defendant \
    plaintiff",
    );
    let n = w.len();
    if n == 0 {
        return false;
    }
    let last = w[n - 1];
    if ROLES.has(last) {
        return true;
    }
    let own = |x: &str| same(x, "my") || same(x, "our") || same(x, "your");
    RELATIONS.has(last) && (n >= 2 && own(w[n - 2]) || n >= 3 && own(w[n - 3]))
}

/// A record's name field ending `line` (the text before a name): `Name: `, `"first_name": "`,
/// `Patient = `, `From: `.
fn field(line: &str) -> bool {
    let quotes = |c: char| c.is_whitespace() || c == '"' || c == '\'';
    let rest = line.trim_end_matches(quotes);
    let Some(rest) = rest.strip_suffix([':', '=']) else {
        return false;
    };
    let rest = rest.trim_end_matches(quotes);
    let label_at = rest
        .rfind(|c: char| !(c.is_alphanumeric() || matches!(c, ' ' | '_' | '-' | '.')))
        .map_or(0, |i| {
            i + rest[i..].chars().next().map_or(1, char::len_utf8)
        });
    let label = split_label(&rest[label_at..]);
    person_field(&label)
}

/// A field label as lower-case words: `first_name`, `firstName`, `First Name` → first, name.
fn split_label(label: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in label.chars() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                words.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !cur.is_empty() {
            words.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_lowercase();
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// Labels of fields that hold a person's name.
fn person_field(words: &[String]) -> bool {
    static PEOPLE: Words = Words::new(
        "name fullname firstname lastname surname forename patient customer client \
    employee contact from to cc bcc attn attention recipient sender signed signature \
    applicant cardholder beneficiary guardian spouse insured policyholder passenger \
    guest tenant owner holder kin emergency member requester reporter assignee",
    );
    /// A `… name` that names a thing, not a person.
    static THINGS: Words = Words::new(
        "file product company org organization organisation domain host class function \
    method table column field model project app brand city country street place item \
    variable package module branch tag key event team group role category type font \
    tool game song book movie film band school university business store shop site \
    server service queue bucket db database index schema repo image container pet \
    dog cat course dish recipe plan task job step feature attribute object element \
    node resource user account screen display device channel bot character hero \
    player ship station stage report bank source venue hotel restaurant building room \
    network printer document doc sheet workbook folder directory path program workflow \
    pipeline job cluster region zone instance",
    );
    let n = words.len();
    if n == 0 || n > 4 {
        return false;
    }
    let last = words[n - 1].as_str();
    if last == "name" || last == "names" {
        return n == 1 || !THINGS.has(&words[n - 2]);
    }
    n <= 2 && PEOPLE.has(last) && (n == 1 || !THINGS.has(&words[0]))
}

static GREETINGS: Words = Words::new(
    "dear hi hello hey greetings morning afternoon evening hiya yo howdy hola bonjour \
    hallo ciao olá ola",
);

/// A greeting opening the line, then the name, then a comma, a colon, an exclamation mark or
/// the end of the line ("Dear" needs none of those).
fn salutation(
    text: &str,
    span: &Range<usize>,
    line: &str,
    whole: bool,
    mut w: Vec<&str>,
) -> Option<Cue> {
    if !whole {
        return None;
    }
    let opens = line
        .split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '’'))
        .filter(|x| !x.is_empty())
        .count()
        == w.len();
    while w.last().is_some_and(|x| TITLES.has(x)) {
        w.pop();
    }
    let greeting = match w.as_slice() {
        [g] => GREETINGS.has(g),
        [g, x] => same(g, "good") && GREETINGS.has(x) || same(g, "hi") && same(x, "there"),
        _ => false,
    };
    if !opens || !greeting || !capitalised(text, span) {
        return None;
    }
    // "Hi Tom," opening a letter or message ends its line; "Hi Siri, how are you" in a chat
    // speaks to the assistant.
    let rest = text[span.end..].trim_start_matches([' ', '\t']);
    let rest = rest.strip_prefix([',', ':', '!', '-', '—']).unwrap_or(rest);
    let ends_line = rest
        .trim_start_matches([' ', '\t'])
        .chars()
        .next()
        .is_none_or(|c| c == '\n' || c == '\r');
    (same(w[0], "dear") || ends_line).then_some(Cue::Salutation)
}

/// A name alone on the line after a sign-off ("Best regards,\nJane"), or after a sign-off
/// on its own line ("Thanks, Jane" ending the text or the line).
pub(super) fn signature(text: &str, span: &Range<usize>) -> Option<Cue> {
    const CLOSINGS: &str = "regards|best regards|kind regards|warm regards|best wishes|best|cheers|thanks|\
    thank you|many thanks|thanks again|sincerely|yours sincerely|sincerely yours|\
    yours truly|yours faithfully|yours|respectfully|love|warmly|take care|\
    all the best|with thanks|with gratitude|signed";
    let closing = |s: &str| {
        let s = s
            .trim()
            .trim_matches(|c: char| !c.is_alphanumeric())
            .to_lowercase();
        CLOSINGS.split('|').any(|c| c == s)
    };
    // Nothing but punctuation may follow the name on its line.
    let ends_line = text[span.end..]
        .chars()
        .find(|c| !matches!(c, '.' | '!' | ',' | ' ' | '\t' | '\r'))
        .is_none_or(|c| c == '\n');
    if !ends_line {
        return None;
    }
    let (before, whole) = line_before(text, span.start);
    if whole
        && before
            .trim_start_matches([' ', '\t', '-', '—', '~'])
            .is_empty()
    {
        // The name is alone on its line: the line before must be a sign-off.
        let line_start = span.start - before.len();
        let (prev, _) = line_before(text, line_start.saturating_sub(1));
        let prev = if prev.trim().is_empty() {
            line_before(text, line_start.saturating_sub(prev.len() + 2)).0
        } else {
            prev
        };
        return closing(prev).then_some(Cue::Signature);
    }
    let before = before.trim_end();
    before
        .strip_suffix(',')
        .is_some_and(|b| closing(b.rsplit(['.', '!', '?', '\n']).next().unwrap_or(b)))
        .then_some(Cue::Signature)
}
