//! The model: one-vs-rest heads (two gates, the anchor policy, the categories) over the hashed
//! features, the gates' combination, and the format the weights are embedded in.

use super::features::{DIMS, features, features_of, sentences, words};
use std::sync::OnceLock;

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
    /// The larger of the gates.
    pub flagged: f32,
    /// Each gate's score, in [`HEADS`] order: `content` (abusive or explicit text), `request`
    /// (asking for harmful help).
    pub gates: [f32; GATES],
    pub categories: Vec<(&'static str, f32)>,
}

/// The gates' logits from a text's [`Model::readings`]: each gate's whole-text logit or its
/// best sentence's less `offset`, whichever is higher; on the `content` gate the [`POLICY`]
/// head's whole-text logit times `policy_weight` and the [`rules`](crate::rules) logit, on
/// the `request` gate the [`requests`](crate::requests) rules' logit. Training picks the
/// offset and the weight on this, and scoring applies it.
pub fn gates(
    r: &[(f32, f32)],
    offset: f32,
    policy_weight: f32,
    rules: [f32; GATES],
) -> [f32; GATES] {
    let mut g = [0.0; GATES];
    for (g, (w, s)) in g.iter_mut().zip(r) {
        *g = w.max(s - offset);
    }
    g[0] += policy_weight * r[POLICY].0;
    for (g, r) in g.iter_mut().zip(rules) {
        *g += r;
    }
    g
}

/// The curated rules' logits for each gate, for `text` whose [`words`] are `ws`.
pub fn rule_logits(text: &str, ws: &[String]) -> [f32; GATES] {
    [crate::rules::logit(ws), crate::requests::logit(text)]
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
            rule_logits(text, &ws),
        );
        z[..GATES].copy_from_slice(&g);
        z
    }

    /// Scores of every head for `text`. The flag is the larger of the gates: training shifts
    /// each gate's bias so that its own best cut sits at zero, which puts both on one scale.
    pub fn score(&self, text: &str) -> Scores {
        let z = self.logits(text);
        let gates = [sigmoid(z[0]), sigmoid(z[1])];
        let categories = (FIRST_CATEGORY..HEADS.len())
            .map(|h| (HEADS[h], sigmoid(z[h])))
            .collect();
        Scores {
            flagged: gates.iter().copied().fold(0.0, f32::max),
            gates,
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
            Model::from_bytes(include_bytes!("../../model/moderation.bin"))
                .unwrap_or_else(Model::zeros)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
