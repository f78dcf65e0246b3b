//! The model: the n-gram weights, the stacking and Platt layers, the threshold and the prose
//! [`Vocabulary`], and the format they are embedded in.

use super::features::DIMS;
use super::stack::{SHAPE, Stack};
use std::sync::OnceLock;

/// A linear model, its calibration and its default decision threshold.
#[derive(Debug, Clone)]
pub struct Model {
    pub weights: Vec<f32>,
    pub bias: f32,
    /// Combines a reading's n-gram logit with its shape.
    pub stack: Stack,
    /// Platt layer: `p = sigmoid(platt_a * z + platt_b)`.
    pub platt_a: f32,
    pub platt_b: f32,
    /// Calibrated score at or above which a text counts as an attack.
    pub threshold: f32,
    /// Words of natural prose, for the stacking layer's unknown-words input.
    pub vocabulary: Vocabulary,
}

/// The words of natural prose (hashed into a bitset), learned by the training command from the
/// trainable prose it is given: an optimised adversarial suffix is built of fragments no prose
/// holds ("convenientielt", "implicitlypull"), and it sits at the end of a plain request.
#[derive(Debug, Clone, PartialEq)]
pub struct Vocabulary {
    words: u32,
    bits: Vec<u64>,
}

impl Vocabulary {
    /// Bits in the set (128 KB): a few per cent of unknown words collide with a known one.
    const BITS: usize = 1 << 20;

    /// No words: every word counts as known, so the input is off.
    pub fn empty() -> Vocabulary {
        Vocabulary {
            words: 0,
            bits: vec![0; Self::BITS / 64],
        }
    }

    /// Adds a word by its hash (`fnv1a` of the folded word, as
    /// [`features`](fn@crate::detector::features) computes it).
    pub fn insert(&mut self, hash: u64) {
        let i = (hash % Self::BITS as u64) as usize;
        if let Some(b) = self.bits.get_mut(i / 64) {
            if *b & (1 << (i % 64)) == 0 {
                self.words += 1;
            }
            *b |= 1 << (i % 64);
        }
    }

    /// Whether the word with this hash is known (always, for an empty vocabulary).
    pub fn knows(&self, hash: u64) -> bool {
        let i = (hash % Self::BITS as u64) as usize;
        self.words == 0
            || self
                .bits
                .get(i / 64)
                .is_some_and(|b| b & (1 << (i % 64)) != 0)
    }

    /// How many distinct words (bits) it holds.
    pub fn len(&self) -> usize {
        self.words as usize
    }

    /// Whether it holds no words.
    pub fn is_empty(&self) -> bool {
        self.words == 0
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl Model {
    /// An untrained model.
    pub fn zeros() -> Model {
        Model {
            weights: vec![0.0; DIMS],
            bias: 0.0,
            vocabulary: Vocabulary::empty(),
            stack: Stack::default(),
            platt_a: 1.0,
            platt_b: 0.0,
            threshold: 0.5,
        }
    }

    /// The linear logit for features `f`.
    pub fn logit(&self, f: &[u32]) -> f32 {
        let norm = 1.0 / (f.len().max(1) as f32).sqrt();
        let sum: f32 = f
            .iter()
            .map(|i| self.weights.get(*i as usize).copied().unwrap_or(0.0))
            .sum();
        self.bias + sum * norm
    }

    /// The calibrated score of a raw logit.
    pub fn calibrate(&self, z: f32) -> f32 {
        sigmoid(self.platt_a * z + self.platt_b)
    }

    /// Serialises: magic, dims, threshold, bias, Platt a and b, scale, the stacking layer, i16
    /// weights, then the vocabulary's word count and bits (LE).
    pub fn to_bytes(&self) -> Vec<u8> {
        let max = self
            .weights
            .iter()
            .fold(0f32, |m, w| m.max(w.abs()))
            .max(1e-9);
        let scale = max / i16::MAX as f32;
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&(DIMS as u32).to_le_bytes());
        for x in [self.threshold, self.bias, self.platt_a, self.platt_b, scale]
            .into_iter()
            .chain([self.stack.bias, self.stack.ngram])
            .chain(self.stack.shape)
        {
            out.extend_from_slice(&x.to_le_bytes());
        }
        for w in &self.weights {
            out.extend_from_slice(&((w / scale).round() as i16).to_le_bytes());
        }
        out.extend_from_slice(&self.vocabulary.words.to_le_bytes());
        for b in &self.vocabulary.bits {
            out.extend_from_slice(&b.to_le_bytes());
        }
        out
    }

    /// Reads [`Model::to_bytes`] output.
    pub fn from_bytes(b: &[u8]) -> Option<Model> {
        let rd = |at: usize| -> Option<[u8; 4]> { b.get(at..at + 4)?.try_into().ok() };
        let f = |at: usize| rd(at).map(f32::from_le_bytes);
        if b.get(..8)? != MAGIC || u32::from_le_bytes(rd(8)?) as usize != DIMS {
            return None;
        }
        let (threshold, bias, platt_a, platt_b, scale) = (f(12)?, f(16)?, f(20)?, f(24)?, f(28)?);
        let mut stack = Stack {
            bias: f(32)?,
            ngram: f(36)?,
            shape: [0.0; SHAPE],
        };
        for (i, w) in stack.shape.iter_mut().enumerate() {
            *w = f(40 + 4 * i)?;
        }
        let at = 40 + 4 * SHAPE;
        let raw = b.get(at..at + DIMS * 2)?;
        let weights = raw
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]) as f32 * scale)
            .collect();
        let at = at + DIMS * 2;
        let words = u32::from_le_bytes(rd(at)?);
        let raw = b.get(at + 4..at + 4 + Vocabulary::BITS / 8)?;
        let bits = raw
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        Some(Model {
            weights,
            bias,
            stack,
            platt_a,
            platt_b,
            threshold,
            vocabulary: Vocabulary { words, bits },
        })
    }

    /// The model this build embeds, loaded once, on first use.
    pub fn builtin() -> &'static Model {
        static M: OnceLock<Model> = OnceLock::new();
        M.get_or_init(|| Model::from_bytes(WEIGHTS).unwrap_or_else(Model::zeros))
    }
}

const MAGIC: &[u8; 8] = b"PCINJ6\0\0";
static WEIGHTS: &[u8] = include_bytes!("../../model/injection.bin");

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::hash::fnv1a;

    #[test]
    fn weights_round_trip() {
        let mut m = Model::zeros();
        m.weights[5] = 1.25;
        m.bias = -0.5;
        m.threshold = 0.7;
        m.platt_a = 0.8;
        m.platt_b = -0.1;
        m.stack.shape[3] = 0.25;
        m.stack.ngram = 0.9;
        m.vocabulary.insert(fnv1a(b"pancakes"));
        let b = Model::from_bytes(&m.to_bytes()).unwrap();
        assert_eq!(b.stack, m.stack);
        assert_eq!(b.vocabulary, m.vocabulary);
        assert!(b.vocabulary.knows(fnv1a(b"pancakes")) && !b.vocabulary.knows(fnv1a(b"crepes")));
        assert!((b.weights[5] - 1.25).abs() < 1e-3);
        assert_eq!(
            (b.bias, b.threshold, b.platt_a, b.platt_b),
            (-0.5, 0.7, 0.8, -0.1)
        );
    }
}
