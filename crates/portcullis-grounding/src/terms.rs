//! Words as the check compares them: lower-cased, crudely stemmed, numbers normalised
//! ("1,200" = "1200", "$2.79" = "2.79", "two" = "2"), stop words told apart — the same
//! treatment on both sides, so only what a claim adds stands out.

/// One word of a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word<'a> {
    /// As written.
    pub raw: &'a str,
    /// Byte offset in the text.
    pub start: usize,
    /// The comparison key: a normalised number or a stemmed lower-case word.
    pub key: String,
    /// Holds a digit (or is a number word): a number, date or quantity.
    pub numeric: bool,
    /// Starts with a capital letter.
    pub capitalised: bool,
    /// A function word ("the", "of", "was") that says nothing on its own.
    pub stop: bool,
}

/// Function words: too common to support or contradict anything.
const STOP_WORDS: &[&str] = &[
    "a", "about", "after", "all", "also", "am", "an", "and", "any", "are", "as", "at", "be",
    "been", "before", "being", "both", "but", "by", "can", "could", "did", "do", "does", "doing",
    "during", "each", "either", "for", "from", "had", "has", "have", "having", "he", "her", "here",
    "hers", "him", "his", "how", "i", "if", "in", "into", "is", "it", "its", "just", "me", "more",
    "most", "my", "no", "nor", "not", "of", "on", "once", "only", "or", "other", "our", "out",
    "over", "own", "s", "same", "she", "should", "so", "some", "such", "t", "than", "that", "the",
    "their", "them", "then", "there", "these", "they", "this", "those", "through", "to", "too",
    "under", "until", "up", "very", "was", "we", "were", "what", "when", "where", "which", "while",
    "who", "whom", "why", "will", "with", "would", "yes", "you", "your", "yeah", "well", "sure",
    "know", "think", "like", "really", "oh", "one", "many", "much",
];

/// Number words read as digits, so "two" in a claim matches "2" in a document.
const NUMBER_WORDS: &[(&str, &str)] = &[
    ("zero", "0"),
    ("two", "2"),
    ("three", "3"),
    ("four", "4"),
    ("five", "5"),
    ("six", "6"),
    ("seven", "7"),
    ("eight", "8"),
    ("nine", "9"),
    ("ten", "10"),
    ("eleven", "11"),
    ("twelve", "12"),
    ("thirteen", "13"),
    ("fifteen", "15"),
    ("twenty", "20"),
    ("thirty", "30"),
    ("forty", "40"),
    ("fifty", "50"),
    ("hundred", "100"),
    ("thousand", "1000"),
];

/// Whether a lower-cased word is a stop word.
pub fn is_stop(lower: &str) -> bool {
    STOP_WORDS.contains(&lower)
}

/// The words of `text`, in order. A number keeps its inner separators ("1,200", "2.79",
/// "10:30"); other words split at anything that is not a letter or digit.
pub fn words(text: &str) -> Vec<Word<'_>> {
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        if !c.is_alphanumeric() {
            continue;
        }
        let mut end = start + c.len_utf8();
        let mut digits = c.is_ascii_digit();
        while let Some(&(i, d)) = chars.peek() {
            let joins_number = digits
                && matches!(d, ',' | '.' | ':')
                && text[i + 1..]
                    .chars()
                    .next()
                    .is_some_and(|n| n.is_ascii_digit());
            if d.is_alphanumeric() || joins_number {
                digits |= d.is_ascii_digit();
                end = i + d.len_utf8();
                chars.next();
            } else {
                break;
            }
        }
        out.push(word(&text[start..end], start));
    }
    out
}

fn word(raw: &str, start: usize) -> Word<'_> {
    let lower = raw.to_lowercase();
    let capitalised = raw.chars().next().is_some_and(char::is_uppercase);
    if let Some(n) = number_key(&lower) {
        return Word {
            raw,
            start,
            key: n,
            numeric: true,
            capitalised,
            stop: false,
        };
    }
    let stop = is_stop(&lower);
    Word {
        raw,
        start,
        key: if stop { lower } else { stem(&lower) },
        numeric: false,
        capitalised,
        stop,
    }
}

/// The normal form of a number word or a token with digits: separators dropped, a trailing
/// ".0" and ordinal suffixes removed ("1,200.0" → "1200", "3rd" → "3", "1990s" → "1990").
pub fn number_key(lower: &str) -> Option<String> {
    if let Some((_, d)) = NUMBER_WORDS.iter().find(|(w, _)| *w == lower) {
        return Some((*d).to_owned());
    }
    if !lower.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut s: String = lower.chars().filter(|c| *c != ',').collect();
    for suffix in ["st", "nd", "rd", "th", "s"] {
        if let Some(head) = s.strip_suffix(suffix)
            && head.bytes().last().is_some_and(|b| b.is_ascii_digit())
        {
            s = head.to_owned();
            break;
        }
    }
    if s.contains('.') && s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_owned();
    }
    Some(s)
}

/// A crude stem: enough that "hosted", "hosts" and "hosting" meet at "host".
pub fn stem(lower: &str) -> String {
    let w = lower.strip_suffix("'s").unwrap_or(lower);
    let n = w.chars().count();
    let rules: [(&str, &str, usize); 9] = [
        ("ies", "y", 4),
        ("sses", "ss", 5),
        ("ing", "", 5),
        ("edly", "", 6),
        ("ed", "", 4),
        ("ly", "", 5),
        ("es", "", 5),
        ("ss", "ss", 0),
        ("s", "", 4),
    ];
    for (suffix, with, min) in rules {
        if n >= min && w.ends_with(suffix) {
            let head = &w[..w.len() - suffix.len()];
            let mut out = head.to_owned();
            out.push_str(with);
            // "stopped" → "stop", "running" → "run": undouble a final consonant.
            let b = out.as_bytes();
            if with.is_empty()
                && b.len() >= 3
                && b[b.len() - 1] == b[b.len() - 2]
                && !matches!(b[b.len() - 1], b'l' | b's' | b'z' | b'e' | b'o')
            {
                out.pop();
            }
            return out;
        }
    }
    w.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(t: &str) -> Vec<String> {
        words(t).into_iter().map(|w| w.key).collect()
    }

    #[test]
    fn numbers_normalise_on_both_sides() {
        assert_eq!(
            keys("1,200 $2.79 3.50 two 1990s 21st"),
            ["1200", "2.79", "3.5", "2", "1990", "21"]
        );
        assert!(
            words("in 1844")
                .iter()
                .any(|w| w.numeric && w.key == "1844")
        );
        assert_eq!(keys("10:30, then"), ["10:30", "then"]);
    }

    #[test]
    fn stems_meet_and_offsets_point_at_the_word() {
        assert_eq!(stem("hosted"), "host");
        assert_eq!(stem("hosting"), "host");
        assert_eq!(stem("hosts"), "host");
        assert_eq!(stem("stopped"), "stop");
        assert_eq!(stem("studies"), "study");
        assert_eq!(stem("glass"), "glass");
        let t = "Bob Barker's show";
        let w = words(t);
        assert_eq!(&t[w[1].start..w[1].start + w[1].raw.len()], "Barker");
        assert!(w[0].capitalised && !w[0].stop);
        assert!(words("the").iter().all(|w| w.stop));
    }
}
