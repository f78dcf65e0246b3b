//! What the classifier reads in a text: its folded words, their hashed uni- and bigrams and
//! in-word character n-grams, the profanity lexicon's hits, and the sentences of a long text.

use portcullis_core::hash::{Fnv, fnv1a_parts};
use std::sync::OnceLock;

/// Feature space size (hashed).
pub const DIMS: usize = 1 << 17;

/// The profanity lexicon's words and two-word phrases, as sorted hashes of their words (see
/// [`lexicon_key`]): looked up for every word and word pair of a message, so a binary search
/// over integers, not string hashing.
fn lexicon() -> &'static [u64] {
    static L: OnceLock<Vec<u64>> = OnceLock::new();
    L.get_or_init(|| {
        let mut keys: Vec<u64> = include_str!("../../model/profanity_wordlist.txt")
            .lines()
            .filter_map(|line| {
                let w = line.trim().to_lowercase();
                let parts: Vec<&str> = w.split(' ').collect();
                match parts[..] {
                    [""] => None,
                    [a] => Some(lexicon_key(a, None)),
                    [a, b] => Some(lexicon_key(a, Some(b))),
                    // Longer phrases never match: messages are looked up word by word and by
                    // pairs.
                    _ => None,
                }
            })
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    })
}

/// The lexicon key of a word, or of a word and the next.
fn lexicon_key(w: &str, next: Option<&str>) -> u64 {
    match next {
        None => fnv1a_parts(&[b"lexw", w.as_bytes()]),
        Some(n) => fnv1a_parts(&[b"lexp", w.as_bytes(), n.as_bytes()]),
    }
}

/// Lower-cased words of `text` after folding hidden characters and compatibility forms.
pub fn words(text: &str) -> Vec<String> {
    let n = portcullis_core::text::normalize(text);
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in n.text.chars() {
        if c.is_ascii_alphanumeric() || c == '\'' {
            // `to_lowercase`'s iterator per character is costly; ASCII needs none.
            cur.push(c.to_ascii_lowercase());
        } else if c.is_alphanumeric() {
            cur.extend(c.to_lowercase());
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The hashed feature indices of `text` (deduplicated, sorted).
pub fn features(text: &str) -> Vec<u32> {
    features_of(&words(text))
}

/// The hashed feature indices of a text's [`words`].
pub(super) fn features_of(ws: &[String]) -> Vec<u32> {
    let mut f: Vec<u32> = Vec::with_capacity(ws.len() * 16 + 4);
    let idx = |h: u64| (h % DIMS as u64) as u32;
    let lex = lexicon();
    let in_lexicon = |key: u64| lex.binary_search(&key).is_ok();
    let mut lex_hits = 0;
    // Buffer reused across words.
    let mut padded = Vec::<char>::new();
    for (i, w) in ws.iter().enumerate() {
        f.push(idx(fnv1a_parts(&[b"w", w.as_bytes()])));
        if let Some(next) = ws.get(i + 1) {
            f.push(idx(fnv1a_parts(&[b"b", w.as_bytes(), next.as_bytes()])));
            if in_lexicon(lexicon_key(w, Some(next))) {
                lex_hits += 1;
            }
        }
        if in_lexicon(lexicon_key(w, None)) {
            lex_hits += 1;
        }
        padded.clear();
        padded.push(' ');
        padded.extend(w.chars());
        padded.push(' ');
        // Each 3-, 4- and 5-gram, hashed as `fnv1a_parts(&[b"c", gram])`: the three grams
        // from one position share their first three characters, which are hashed once.
        let mut buf = [0u8; 4];
        for i in 0..padded.len() {
            let mut h = CHAR_GRAM;
            for (j, c) in padded[i..].iter().take(5).enumerate() {
                h = h.bytes(c.encode_utf8(&mut buf).as_bytes());
                if j >= 2 {
                    f.push(idx(h.end_part().finish()));
                }
            }
        }
    }
    let lex_bucket: &[u8] = match lex_hits {
        0 => b"0",
        1 => b"1",
        2 | 3 => b"2",
        _ => b"4",
    };
    f.push(idx(fnv1a_parts(&[b"lex", lex_bucket])));
    let len_bucket: &[u8] = match ws.len() {
        0..=5 => b"xs",
        6..=20 => b"s",
        21..=80 => b"m",
        _ => b"l",
    };
    f.push(idx(fnv1a_parts(&[b"len", len_bucket])));
    sort_dedup(&mut f);
    f
}

/// The features of a text's [`words`] with a readable name each (`word:kill`,
/// `pair:kill|process`, `chars: kil`, `lexicon:1`, `length:s`), for explanations: the same
/// indices as [`features_of`], where two names share an index the first is kept. Slower (it
/// builds strings); never on the scoring path.
pub fn named_features(ws: &[String]) -> Vec<(u32, String)> {
    let idx = |h: u64| (h % DIMS as u64) as u32;
    let mut out: Vec<(u32, String)> = Vec::new();
    for (i, w) in ws.iter().enumerate() {
        out.push((idx(fnv1a_parts(&[b"w", w.as_bytes()])), format!("word:{w}")));
        if let Some(next) = ws.get(i + 1) {
            let h = fnv1a_parts(&[b"b", w.as_bytes(), next.as_bytes()]);
            out.push((idx(h), format!("pair:{w}|{next}")));
        }
        let padded: Vec<char> = std::iter::once(' ')
            .chain(w.chars())
            .chain(std::iter::once(' '))
            .collect();
        for n in 3..=5 {
            for g in padded.windows(n) {
                let g: String = g.iter().collect();
                out.push((
                    idx(fnv1a_parts(&[b"c", g.as_bytes()])),
                    format!("chars:{g}"),
                ));
            }
        }
    }
    let all = features_of(ws);
    let lex = all.iter().find_map(|&k| {
        [b"0" as &[u8], b"1", b"2", b"4"]
            .iter()
            .find(|b| idx(fnv1a_parts(&[b"lex", b])) == k)
            .map(|b| (k, format!("lexicon:{}", String::from_utf8_lossy(b))))
    });
    out.extend(lex);
    let len = all.iter().find_map(|&k| {
        [b"xs" as &[u8], b"s", b"m", b"l"]
            .iter()
            .find(|b| idx(fnv1a_parts(&[b"len", b])) == k)
            .map(|b| (k, format!("length:{}", String::from_utf8_lossy(b))))
    });
    out.extend(len);
    let mut seen = std::collections::HashSet::new();
    out.retain(|(k, _)| seen.insert(*k));
    out
}

/// The hash state of the character n-grams' prefix (`fnv1a_parts`' first part, `"c"`).
const CHAR_GRAM: Fnv = Fnv::new().bytes(b"c").end_part();

/// Sorts and deduplicates feature indices; a long text's thousands through a bitset of the
/// hashed space (sorting them took a sixth of a 6 KB message's scoring).
fn sort_dedup(f: &mut Vec<u32>) {
    if f.len() < 256 {
        f.sort_unstable();
        f.dedup();
        return;
    }
    thread_local! {
        static SEEN: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SEEN.with(|seen| {
        let mut bits = seen.borrow_mut();
        bits.resize(DIMS / 64, 0);
        for &i in f.iter() {
            bits[i as usize / 64] |= 1 << (i % 64);
        }
        f.clear();
        for (k, word) in bits.iter_mut().enumerate().filter(|(_, w)| **w != 0) {
            let mut x = std::mem::take(word);
            while x != 0 {
                f.push(k as u32 * 64 + x.trailing_zeros());
                x &= x - 1;
            }
        }
    });
}

/// The sentences of a longer text (four words or more, when there are at least two), judged
/// on their own as well: one abusive sentence in a long, calm post is diluted when only the
/// whole is scored.
pub fn sentences(text: &str) -> Vec<&str> {
    let s: Vec<&str> = text
        .split(['.', '!', '?', '\n'])
        .filter(|s| s.split_whitespace().nth(3).is_some())
        .collect();
    if s.len() >= 2 { s } else { Vec::new() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_and_short_feature_lists_sort_and_dedup_alike() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for n in [0, 1, 255, 256, 3000] {
            let mut f: Vec<u32> = (0..n)
                .map(|_| {
                    seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    // Few distinct values, so there are repeats to drop.
                    ((seed >> 33) % (DIMS as u64 / 8)) as u32 * 7
                })
                .collect();
            let mut expected = f.clone();
            expected.sort_unstable();
            expected.dedup();
            sort_dedup(&mut f);
            assert_eq!(f, expected, "{n}");
        }
        // The bitset is left clear for the next text.
        let mut again = vec![5u32; 300];
        sort_dedup(&mut again);
        assert_eq!(again, vec![5]);
    }

    #[test]
    fn char_grams_hash_as_their_parts() {
        let f = features_of(&["k\u{e9}ll".to_string()]);
        for g in [" k\u{e9}", "k\u{e9}ll", " k\u{e9}ll", "\u{e9}ll ", "ll "] {
            let h = (fnv1a_parts(&[b"c", g.as_bytes()]) % DIMS as u64) as u32;
            assert!(f.binary_search(&h).is_ok(), "{g}");
        }
    }

    #[test]
    fn named_features_are_the_scored_features() {
        for t in [
            "How do I kill a Python process?",
            "caf\u{e9} au lait, s'il vous pla\u{ee}t",
            "",
        ] {
            let ws = words(t);
            let mut named: Vec<u32> = named_features(&ws).iter().map(|(k, _)| *k).collect();
            named.sort_unstable();
            assert_eq!(named, features_of(&ws), "{t}");
        }
        let ws = words("kill it");
        let n = named_features(&ws);
        assert!(n.iter().any(|(_, s)| s == "pair:kill|it"));
        assert!(n.iter().any(|(_, s)| s == "chars: kil"));
    }

    #[test]
    fn features_survive_hidden_characters_and_case() {
        assert_eq!(
            features("You are an IDIOT"),
            features("you are an id\u{200b}iot")
        );
        assert_ne!(features("you are kind"), features("you are an idiot"));
    }

    #[test]
    fn lexicon_words_and_two_word_phrases_are_counted() {
        let bucket = |b: &[u8]| (fnv1a_parts(&[b"lex", b]) % DIMS as u64) as u32;
        let has = |t: &str, b: &[u8]| features(t).contains(&bucket(b));
        assert!(has("what a lovely afternoon", b"0"));
        // "booty call" is a phrase of the list; "booty" alone is not a word of it.
        assert!(has("she left a booty call message", b"1"));
        assert!(!has("pirate booty on the island", b"1"));
        // Three-word entries ("2 girls 1 cup") are looked up only by word and pair.
        assert!(lexicon().contains(&lexicon_key("blow", Some("job"))));
        assert!(!lexicon().contains(&lexicon_key("lovely", None)));
    }

    #[test]
    fn sentences_need_four_words_and_a_second_sentence() {
        assert!(sentences("One short line. And a second one here").is_empty());
        assert_eq!(
            sentences("The first sentence has words! Is the second one here?\nok"),
            ["The first sentence has words", " Is the second one here"]
        );
        assert!(sentences("Only one sentence of several words").is_empty());
    }
}
