//! The cues read from the words around a name: an introduction, a relation, a record's name
//! field, a salutation, a sign-off. Word lists are written from general knowledge of how
//! people introduce themselves and write letters and records, not from any data set.

use super::{Cue, capitalised};
use std::ops::Range;

/// Lower-case words before `at` on its line (nearest last), apostrophes folded to `'`,
/// stopping at a sentence end.
fn line_words(text: &str, at: usize, max: usize) -> Vec<String> {
    let line = &text[text[..at].rfind('\n').map_or(0, |i| i + 1)..at];
    // A title's full stop ("Mr.") ends no sentence.
    let ends_sentence = |i: usize| {
        line.as_bytes()[i] != b'.' || {
            let word = line[..i]
                .rsplit(|c: char| !c.is_alphanumeric())
                .next()
                .unwrap_or_default()
                .to_lowercase();
            !listed(TITLES, word.as_str())
        }
    };
    let clause_at = line
        .rmatch_indices(['.', '!', '?', ';'])
        .map(|(i, _)| i)
        .find(|i| ends_sentence(*i))
        .map_or(0, |i| i + 1);
    let clause = &line[clause_at..];
    let mut words: Vec<String> = clause
        .split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '’'))
        .filter(|w| !w.is_empty())
        .rev()
        .take(max)
        .map(|w| w.to_lowercase().replace('’', "'"))
        .collect();
    words.reverse();
    words
}

/// Whether `word` is one of the space-separated words of `list`.
fn listed(list: &str, word: &str) -> bool {
    list.split_whitespace().any(|w| w == word)
}

/// Whether a lower-case word is a title.
pub(super) fn is_title(word: &str) -> bool {
    listed(TITLES, word)
}

/// Titles between a cue and a name ("my landlord, Mr. Smith").
const TITLES: &str = "mr mrs ms miss mx dr prof sir madam";

/// Cues in the words right before the name: an introduction, a relation, a name field or a
/// salutation.
pub(super) fn words_before(text: &str, span: &Range<usize>) -> Option<Cue> {
    let mut w = line_words(text, span.start, 6);
    while w.last().is_some_and(|x| listed(TITLES, x.as_str())) {
        w.pop();
    }
    let ends = |p: &[&str]| {
        w.len() >= p.len() && w[w.len() - p.len()..].iter().zip(p).all(|(a, b)| a == b)
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
    if INTRODUCTIONS.iter().any(|p| ends(p)) || this_is(&w) {
        return Some(Cue::Introduction);
    }
    if relation(&w) {
        return Some(Cue::Relation);
    }
    if field(text, span.start) {
        return Some(Cue::Field);
    }
    salutation(text, span)
}

/// "Hi, this is Jane": after a greeting (not "This is Paris in spring").
fn this_is(w: &[String]) -> bool {
    let n = w.len();
    n >= 3 && w[n - 2] == "this" && w[n - 1] == "is" && listed(GREETINGS, w[n - 3].as_str())
}

/// People a writer has (with my / our / your, perhaps one word between: "my best friend"), or
/// the role of someone in a record ("patient", "customer") right before the name.
fn relation(w: &[String]) -> bool {
    const RELATIONS: &str = "wife husband partner spouse boyfriend girlfriend fiancé fiance fiancée fiancee \
    son daughter child kid baby mother father mom mum dad parent brother sister \
    sibling cousin aunt uncle niece nephew grandmother grandfather grandma grandpa \
    grandson granddaughter friend colleague coworker co-worker boss manager \
    supervisor employee employer neighbour neighbor roommate flatmate housemate \
    landlord landlady tenant client customer patient student pupil teacher tutor \
    doctor therapist lawyer attorney accountant assistant secretary intern classmate \
    teammate mentor coach guest caller contact ex crush date lead report recruiter \
    candidate applicant member";
    const ROLES: &str = "patient customer client employee applicant tenant cardholder policyholder \
    claimant beneficiary passenger subscriber caller resident inmate defendant \
    plaintiff";
    let n = w.len();
    if n == 0 {
        return false;
    }
    let last = w[n - 1].as_str();
    if listed(ROLES, last) {
        return true;
    }
    let own = |x: &str| matches!(x, "my" | "our" | "your");
    listed(RELATIONS, last) && (n >= 2 && own(&w[n - 2]) || n >= 3 && own(&w[n - 3]))
}

/// A record's name field right before `at` on its line: `Name: `, `"first_name": "`,
/// `Patient = `, `From: `.
fn field(text: &str, at: usize) -> bool {
    let line = &text[text[..at].rfind('\n').map_or(0, |i| i + 1)..at];
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
    const PEOPLE: &str = "name fullname firstname lastname surname forename patient customer client \
    employee contact from to cc bcc attn attention recipient sender signed signature \
    applicant cardholder beneficiary guardian spouse insured policyholder passenger \
    guest tenant owner holder kin emergency member requester reporter assignee";
    /// A `… name` that names a thing, not a person.
    const THINGS: &str = "file product company org organization organisation domain host class function \
    method table column field model project app brand city country street place item \
    variable package module branch tag key event team group role category type font \
    tool game song book movie film band school university business store shop site \
    server service queue bucket db database index schema repo image container pet \
    dog cat course dish recipe plan task job step feature attribute object element \
    node resource user account screen display device channel bot character hero \
    player ship station stage report bank source venue hotel restaurant building room \
    network printer document doc sheet workbook folder directory path program workflow \
    pipeline job cluster region zone instance";
    let n = words.len();
    if n == 0 || n > 4 {
        return false;
    }
    let last = words[n - 1].as_str();
    if last == "name" || last == "names" {
        return n == 1 || !listed(THINGS, words[n - 2].as_str());
    }
    n <= 2 && listed(PEOPLE, last) && (n == 1 || !listed(THINGS, words[0].as_str()))
}

const GREETINGS: &str = "dear hi hello hey greetings morning afternoon evening hiya yo howdy hola bonjour \
    hallo ciao olá ola";

/// A greeting opening the line, then the name, then a comma, a colon, an exclamation mark or
/// the end of the line ("Dear" needs none of those).
fn salutation(text: &str, span: &Range<usize>) -> Option<Cue> {
    let mut w = line_words(text, span.start, 5);
    let line = &text[text[..span.start].rfind('\n').map_or(0, |i| i + 1)..span.start];
    let opens = line
        .split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '’'))
        .filter(|x| !x.is_empty())
        .count()
        == w.len();
    while w.last().is_some_and(|x| listed(TITLES, x.as_str())) {
        w.pop();
    }
    let greeting = match w.as_slice() {
        [g] => listed(GREETINGS, g.as_str()),
        [g, x] => g == "good" && listed(GREETINGS, x.as_str()) || g == "hi" && x == "there",
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
    (w[0] == "dear" || ends_line).then_some(Cue::Salutation)
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
    let line_start = text[..span.start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[span.end..]
        .find('\n')
        .map_or(text.len(), |i| span.end + i);
    let before = &text[line_start..span.start];
    let after = text[span.end..line_end].trim();
    if !after.is_empty() && !after.chars().all(|c| matches!(c, '.' | '!' | ',')) {
        return None;
    }
    if before
        .trim_start_matches([' ', '\t', '-', '—', '~'])
        .is_empty()
    {
        // The name is alone on its line: the line before must be a sign-off.
        let prev = text[..line_start.saturating_sub(1)]
            .rsplit('\n')
            .find(|l| !l.trim().is_empty())?;
        return closing(prev).then_some(Cue::Signature);
    }
    let before = before.trim_end();
    before
        .strip_suffix(',')
        .is_some_and(|b| closing(b.rsplit(['.', '!', '?', '\n']).next().unwrap_or(b)))
        .then_some(Cue::Signature)
}
