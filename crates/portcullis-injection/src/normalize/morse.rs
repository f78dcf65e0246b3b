//! Morse code: a stretch of dots and dashes in a text, decoded when it spells enough letters.

/// International Morse code: letters, digits and common punctuation.
const MORSE: [(&str, char); 44] = [
    (".-", 'a'),
    ("-...", 'b'),
    ("-.-.", 'c'),
    ("-..", 'd'),
    (".", 'e'),
    ("..-.", 'f'),
    ("--.", 'g'),
    ("....", 'h'),
    ("..", 'i'),
    (".---", 'j'),
    ("-.-", 'k'),
    (".-..", 'l'),
    ("--", 'm'),
    ("-.", 'n'),
    ("---", 'o'),
    (".--.", 'p'),
    ("--.-", 'q'),
    (".-.", 'r'),
    ("...", 's'),
    ("-", 't'),
    ("..-", 'u'),
    ("...-", 'v'),
    (".--", 'w'),
    ("-..-", 'x'),
    ("-.--", 'y'),
    ("--..", 'z'),
    ("-----", '0'),
    (".----", '1'),
    ("..---", '2'),
    ("...--", '3'),
    ("....-", '4'),
    (".....", '5'),
    ("-....", '6'),
    ("--...", '7'),
    ("---..", '8'),
    ("----.", '9'),
    (".-.-.-", '.'),
    ("--..--", ','),
    ("..--..", '?'),
    ("-.-.--", '!'),
    (".----.", '\''),
    ("-..-.", '/'),
    ("---...", ':'),
    ("-.--.", '('),
];

/// The longest stretch of Morse code in `text` (dots and dashes, letters split by a space,
/// words by `/` or a wider gap), decoded, when it spells at least eight known letters.
pub(super) fn morse(text: &str) -> Option<String> {
    // Most texts have too few dots and dashes to hold eight letters: one cheap byte count.
    if text.bytes().filter(|b| matches!(b, b'.' | b'-')).count() < 16 {
        return None;
    }
    let is_morse = |c: char| matches!(c, '.' | '-' | ' ' | '/' | '\n');
    let stretch = text
        .split(|c: char| !is_morse(c))
        .max_by_key(|s| s.len())?
        .trim();
    if stretch.len() < 16 {
        return None;
    }
    let mut out = String::new();
    let (mut known, mut unknown) = (0usize, 0usize);
    for word in stretch.split(['/', '\n']).flat_map(|w| w.split("  ")) {
        let mut any = false;
        for code in word.split(' ').filter(|c| !c.is_empty()) {
            match MORSE.iter().find(|(m, _)| *m == code) {
                Some((_, c)) => {
                    out.push(*c);
                    known += 1;
                }
                None => unknown += 1,
            }
            any = true;
        }
        if any {
            out.push(' ');
        }
    }
    (known >= 8 && unknown * 5 <= known).then(|| out.trim_end().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn morse_code_is_decoded_and_dashes_in_prose_are_not() {
        let m = morse(".. --. -. --- .-. .  .- .-.. .-..  .-. ..- .-.. . ... -.-.--").unwrap();
        assert_eq!(m, "ignore all rules!");
        assert_eq!(
            morse("say ... --- ... / ... . -. -.. / .... . .-.. .--. quickly").as_deref(),
            Some("sos send help")
        );
        assert_eq!(morse("wait... -- and then --- nothing ..."), None);
        assert_eq!(morse("a table\n|---|---|---|---|\n| 1 | 2 | 3 | 4 |"), None);
    }
}
