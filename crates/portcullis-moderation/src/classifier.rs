//! The local moderation classifier: one-vs-rest logistic regression over IDF-weighted,
//! length-normalised hashed word uni/bi-grams, character 3- to 5-grams within words (robust to
//! misspellings and not English-only) and a profanity-lexicon feature, plus the curated
//! [`rules`](crate::rules) on the `content` gate. A text of several sentences is judged whole
//! and sentence by sentence. Weights are trained by `portcullis train moderation` and
//! embedded; inference is allocation-light and well under a millisecond per message.

use portcullis_core::hash::{Fnv, fnv1a_parts};
use std::sync::OnceLock;

/// Feature space size (hashed).
pub const DIMS: usize = 1 << 17;

/// The heads: two gates, the anchor policy, then OpenAI's main categories. The gates split
/// "should this be flagged" by kind of text, because the sets disagree on it: `content` learns
/// abusive or explicit text (OpenAI's moderation style, hate speech), `request` learns asking
/// for harmful help. One head over both learned that "How do I kill …" is harmful and that a
/// threat written as a statement is not. `policy` learns OpenAI's set alone (see [`POLICY`]).
pub const HEADS: [&str; 11] = [
    "content",
    "request",
    "policy",
    "harassment",
    "hate",
    "illicit",
    "self-harm",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
];

/// How many of [`HEADS`] are gates: the flag is the larger of them.
pub const GATES: usize = 2;

/// The head trained on the anchor set's texts alone, added to the `content` gate with weight
/// [`Model::policy_weight`]: the other sets label by other policies (profanity as offensive),
/// so the gate they share learns a compromise, and this head keeps OpenAI's own line.
pub const POLICY: usize = 2;

/// The first of [`HEADS`] that is a category.
pub const FIRST_CATEGORY: usize = 3;

/// Trained weights and the decision threshold of the `flagged` head.
#[derive(Debug, Clone)]
pub struct Model {
    /// `DIMS` rows of `HEADS.len()` weights, feature by feature: a feature's weights for every
    /// head share a cache line, so scoring all heads costs one memory read per feature.
    pub weights: Vec<f32>,
    /// Inverse document frequency per feature, from the training texts: rare words say more
    /// than "the" about what a message is.
    pub idf: Vec<f32>,
    pub bias: Vec<f32>,
    /// Subtracted from a sentence's logits when a text is also judged sentence by sentence
    /// (see [`sentences`]): a sentence is short, so its scores are noisier than the whole's.
    pub sentence_offset: f32,
    /// Weight of the [`POLICY`] head's logit in the `content` gate.
    pub policy_weight: f32,
    pub threshold: f32,
}

/// One message's scores, per head, in [0, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    pub flagged: f32,
    pub categories: Vec<(&'static str, f32)>,
}

/// The profanity lexicon's words and two-word phrases, as sorted hashes of their words (see
/// [`lexicon_key`]): looked up for every word and word pair of a message, so a binary search
/// over integers, not string hashing.
fn lexicon() -> &'static [u64] {
    static L: OnceLock<Vec<u64>> = OnceLock::new();
    L.get_or_init(|| {
        let mut keys: Vec<u64> = include_str!("../model/profanity_wordlist.txt")
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

/// The gates' logits from a text's [`Model::readings`]: each gate's whole-text logit or its
/// best sentence's less `offset`, whichever is higher, and on the `content` gate the
/// [`POLICY`] head's whole-text logit times `policy_weight` and the `rules` logit. Training
/// picks the offset and the weight on this, and scoring applies it.
pub fn gates(r: &[(f32, f32)], offset: f32, policy_weight: f32, rules: f32) -> [f32; GATES] {
    let mut g = [0.0; GATES];
    for (g, (w, s)) in g.iter_mut().zip(r) {
        *g = w.max(s - offset);
    }
    g[0] += policy_weight * r[POLICY].0 + rules;
    g
}

/// The hashed feature indices of `text` (deduplicated, sorted).
pub fn features(text: &str) -> Vec<u32> {
    features_of(&words(text))
}

/// The hashed feature indices of a text's [`words`].
fn features_of(ws: &[String]) -> Vec<u32> {
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

const MAGIC: &[u8; 8] = b"PCMOD5\0\0";

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl Model {
    /// An untrained model (all zero).
    pub fn zeros() -> Model {
        Model {
            weights: vec![0.0; DIMS * HEADS.len()],
            idf: vec![1.0; DIMS],
            bias: vec![0.0; HEADS.len()],
            sentence_offset: f32::INFINITY,
            policy_weight: 0.0,
            threshold: 0.5,
        }
    }

    /// The length of `f`'s IDF vector: dividing by it puts long and short messages on one
    /// scale.
    pub fn norm(&self, f: &[u32]) -> f32 {
        f.iter()
            .map(|i| self.idf[*i as usize] * self.idf[*i as usize])
            .sum::<f32>()
            .sqrt()
            .max(1e-9)
    }

    /// Head `h`'s weight of feature `k`.
    pub fn weight(&self, h: usize, k: usize) -> f32 {
        self.weights[k * HEADS.len() + h]
    }

    /// Sets head `h`'s weights (`DIMS` of them).
    pub fn set_head(&mut self, h: usize, w: &[f32]) {
        for (k, w) in w.iter().enumerate() {
            self.weights[k * HEADS.len() + h] = *w;
        }
    }

    /// Raw logit of every head for features `f` of IDF length `norm` (from [`Model::norm`]).
    pub fn head_logits(&self, f: &[u32], norm: f32) -> [f32; HEADS.len()] {
        let mut z = [0.0f32; HEADS.len()];
        for &i in f {
            let x = self.idf[i as usize] / norm;
            let row = &self.weights[i as usize * HEADS.len()..][..HEADS.len()];
            for (z, w) in z.iter_mut().zip(row) {
                *z += w * x;
            }
        }
        for (z, b) in z.iter_mut().zip(&self.bias) {
            *z += b;
        }
        z
    }

    /// Every head's logit for `text` as a whole and, per [`sentences`], for its sentences:
    /// `(whole, best sentence)`, the latter before the offset (`-inf` without sentences, and
    /// for the [`POLICY`] head, which reads the whole text only).
    pub fn readings(&self, text: &str) -> Vec<(f32, f32)> {
        self.readings_of(text, &words(text))
    }

    /// [`Model::readings`] of `text`, whose [`words`] are `ws`.
    fn readings_of(&self, text: &str, ws: &[String]) -> Vec<(f32, f32)> {
        let f = features_of(ws);
        let mut out: Vec<(f32, f32)> = self
            .head_logits(&f, self.norm(&f))
            .iter()
            .map(|z| (*z, f32::NEG_INFINITY))
            .collect();
        for s in sentences(text) {
            let f = features(s);
            let z = self.head_logits(&f, self.norm(&f));
            for (h, o) in out.iter_mut().enumerate().filter(|(h, _)| *h != POLICY) {
                o.1 = o.1.max(z[h]);
            }
        }
        out
    }

    /// Every head's logit for `text`: the whole text's, or its best sentence's less the
    /// offset, whichever is higher; the [`POLICY`] head reads the whole text only (its
    /// sentences add nothing out of fold) and weighs in the `content` gate.
    pub fn logits(&self, text: &str) -> Vec<f32> {
        let ws = words(text);
        let r = self.readings_of(text, &ws);
        let mut z: Vec<f32> = r
            .iter()
            .map(|(w, s)| w.max(s - self.sentence_offset))
            .collect();
        z[POLICY] = r[POLICY].0;
        let g = gates(
            &r,
            self.sentence_offset,
            self.policy_weight,
            crate::rules::logit(&ws),
        );
        z[..GATES].copy_from_slice(&g);
        z
    }

    /// Scores of every head for `text`. The flag is the larger of the gates: training shifts
    /// each gate's bias so that its own best cut sits at zero, which puts both on one scale.
    pub fn score(&self, text: &str) -> Scores {
        let z = self.logits(text);
        let flagged = sigmoid(z[..GATES].iter().copied().fold(f32::NEG_INFINITY, f32::max));
        let categories = (FIRST_CATEGORY..HEADS.len())
            .map(|h| (HEADS[h], sigmoid(z[h])))
            .collect();
        Scores {
            flagged,
            categories,
        }
    }

    /// Serialises to the embedded format: magic, threshold, sentence offset, policy weight,
    /// u16 IDF weights
    /// with one scale, then per head a bias and i16 weights with one scale (little-endian).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&(DIMS as u32).to_le_bytes());
        out.extend_from_slice(&(HEADS.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.threshold.to_le_bytes());
        out.extend_from_slice(&self.sentence_offset.to_le_bytes());
        out.extend_from_slice(&self.policy_weight.to_le_bytes());
        let idf_scale = self.idf.iter().fold(1e-9f32, |m, x| m.max(*x)) / u16::MAX as f32;
        out.extend_from_slice(&idf_scale.to_le_bytes());
        for x in &self.idf {
            out.extend_from_slice(&((x / idf_scale).round() as u16).to_le_bytes());
        }
        for h in 0..HEADS.len() {
            let head = (0..DIMS).map(|k| self.weight(h, k));
            let max = head.clone().fold(0f32, |m, w| m.max(w.abs())).max(1e-9);
            let scale = max / i16::MAX as f32;
            out.extend_from_slice(&self.bias[h].to_le_bytes());
            out.extend_from_slice(&scale.to_le_bytes());
            for w in head {
                out.extend_from_slice(&((w / scale).round() as i16).to_le_bytes());
            }
        }
        out
    }

    /// Reads [`Model::to_bytes`] output.
    pub fn from_bytes(b: &[u8]) -> Option<Model> {
        let rd4 = |at: usize| -> Option<[u8; 4]> { b.get(at..at + 4)?.try_into().ok() };
        if b.get(..8)? != MAGIC {
            return None;
        }
        let dims = u32::from_le_bytes(rd4(8)?) as usize;
        let heads = u32::from_le_bytes(rd4(12)?) as usize;
        if dims != DIMS || heads != HEADS.len() {
            return None;
        }
        let mut m = Model::zeros();
        m.threshold = f32::from_le_bytes(rd4(16)?);
        m.sentence_offset = f32::from_le_bytes(rd4(20)?);
        m.policy_weight = f32::from_le_bytes(rd4(24)?);
        let idf_scale = f32::from_le_bytes(rd4(28)?);
        let raw = b.get(32..32 + dims * 2)?;
        for (x, c) in m.idf.iter_mut().zip(raw.chunks_exact(2)) {
            *x = u16::from_le_bytes([c[0], c[1]]) as f32 * idf_scale;
        }
        let mut at = 32 + dims * 2;
        for h in 0..heads {
            m.bias[h] = f32::from_le_bytes(rd4(at)?);
            let scale = f32::from_le_bytes(rd4(at + 4)?);
            at += 8;
            let raw = b.get(at..at + dims * 2)?;
            for (k, c) in raw.chunks_exact(2).enumerate() {
                m.weights[k * HEADS.len() + h] = i16::from_le_bytes([c[0], c[1]]) as f32 * scale;
            }
            at += dims * 2;
        }
        Some(m)
    }

    /// The model the build embeds (`model/moderation.bin`), loaded once.
    pub fn builtin() -> &'static Model {
        static M: OnceLock<Model> = OnceLock::new();
        M.get_or_init(|| {
            Model::from_bytes(include_bytes!("../model/moderation.bin"))
                .unwrap_or_else(Model::zeros)
        })
    }
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
    fn every_head_reads_its_own_weights_from_the_feature_major_table() {
        let mut m = Model::zeros();
        let f = features("a short text to score");
        for h in 0..HEADS.len() {
            let head: Vec<f32> = (0..DIMS)
                .map(|k| ((k * 7 + h * 13) % 11) as f32 - 5.0)
                .collect();
            m.set_head(h, &head);
            m.bias[h] = h as f32 * 0.5;
        }
        let norm = m.norm(&f);
        let z = m.head_logits(&f, norm);
        for (h, z) in z.iter().enumerate() {
            let direct: f32 = f
                .iter()
                .map(|&k| m.weight(h, k as usize) * (m.idf[k as usize] / norm))
                .sum::<f32>()
                + m.bias[h];
            assert_eq!(*z, direct, "head {h}");
        }
    }

    #[test]
    fn weights_round_trip() {
        let mut m = Model::zeros();
        let mut head = vec![0.0; DIMS];
        (head[17], head[18]) = (0.75, -1.5);
        m.set_head(3, &head);
        m.bias[2] = 0.25;
        m.threshold = 0.6;
        m.idf[5] = 3.5;
        m.sentence_offset = 1.25;
        m.policy_weight = 0.5;
        let back = Model::from_bytes(&m.to_bytes()).unwrap();
        assert_eq!((back.sentence_offset, back.policy_weight), (1.25, 0.5));
        assert!((back.idf[5] - 3.5).abs() < 1e-3 && (back.idf[6] - 1.0).abs() < 1e-3);
        assert!((back.weight(3, 17) - 0.75).abs() < 1e-3);
        assert!((back.weight(3, 18) + 1.5).abs() < 1e-3);
        assert_eq!(back.weight(2, 17), 0.0);
        assert_eq!((back.bias[2], back.threshold), (0.25, 0.6));
        assert!(Model::from_bytes(b"garbage").is_none());
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

    #[test]
    fn an_abusive_sentence_in_a_calm_post_counts_on_its_own() {
        let m = Model::builtin();
        assert!(m.sentence_offset.is_finite());
        let post = "We went to the lake on Saturday and the weather was lovely all day. The kids \
                    swam for hours and we had a picnic under the trees. I will kill you and your \
                    whole family, you worthless piece of shit. Anyway, we drove home around six \
                    and everyone slept well.";
        let content = m.readings(post)[0];
        assert!(
            content.1 > content.0,
            "the sentence reads worse: {content:?}"
        );
        assert!(m.logits(post)[0] > content.0);
        // A calm post has no such sentence.
        let calm = post.replace(
            "I will kill you and your whole family, you worthless piece of shit.",
            "",
        );
        assert!(m.score(&calm).flagged < m.score(post).flagged);
    }

    #[test]
    fn the_shipped_model_separates_obvious_cases() {
        let m = Model::builtin();
        let toxic = [
            "I will kill you and your whole family, you worthless piece of shit",
            "all of those people are subhuman vermin and should be exterminated",
            "I'm gonna stab you",
            "I will murder you",
        ];
        let fine = [
            "How do I kill a Python process that hangs?",
            "What is a good recipe for banana bread?",
            "Can you summarise this article about renewable energy?",
        ];
        let lowest_toxic = toxic
            .iter()
            .map(|t| m.score(t).flagged)
            .fold(1.0f32, f32::min);
        for t in fine {
            let s = m.score(t).flagged;
            assert!(s < m.threshold, "should pass: {t} ({s})");
            assert!(
                s < lowest_toxic,
                "should rank below the toxic examples: {t} ({s})"
            );
        }
        assert!(m.score("How can I make a bomb to kill people").flagged >= m.threshold);
    }
}
