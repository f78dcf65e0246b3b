//! The stacking layer: what a reading is beside its words ([`Shape`]) and how its n-gram logit
//! and shape combine into the reading's logit ([`Stack`]).

use super::document::Overlap;
use super::features::View;

/// What a reading is beside its words — the inputs of the stacking layer, whose weights are
/// fit on out-of-fold n-gram scores (so they count in full, where one hashed feature among
/// hundreds would be diluted).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    /// Rule families matched.
    pub hits: usize,
    /// Share of tokens with punctuation inside them.
    pub odd: f32,
    /// How much more of the last half is such tokens than the first: prose that turns into
    /// symbol-laden gibberish (an optimised adversarial suffix appended to a request).
    pub tail: f32,
    /// Whole message, window or line: each has its own weight.
    pub view: View,
    /// For a line of a document: how much of it the rest of the document shares, and whether
    /// it breaks the document's format.
    pub overlap: Option<Overlap>,
    /// The reading was decoded from a hidden payload.
    pub hidden: bool,
    /// How much more of the last half's words than the first's the vocabulary lacks: the
    /// fragments of an optimised suffix (a text all in another language lacks words evenly).
    pub unknown_tail: f32,
    /// Brackets of the last half that close nothing or are never closed (see
    /// `unbalanced_brackets` in `features`); counted for whole messages only, since windows
    /// cut code.
    pub unbalanced: usize,
}

/// Inputs of the stacking layer per reading.
pub const SHAPE: usize = 16;

/// The names of the stacking layer's inputs, in the order of [`Shape::vector`].
pub const INPUTS: [&str; SHAPE] = [
    "rule_families",
    "odd_tokens",
    "odd_tail",
    "window",
    "line",
    "decoded",
    "line_words_shared_0_of_5",
    "line_words_shared_1_of_5",
    "line_words_shared_2_of_5",
    "line_words_shared_3_of_5",
    "line_words_shared_4_of_5",
    "line_without_words",
    "rules_in_window_or_line",
    "line_breaks_format",
    "unknown_words_tail",
    "unbalanced_brackets",
];

/// The stacking layer: a reading's logit is `bias + ngram * (n-gram logit) + shape · x`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stack {
    pub bias: f32,
    pub ngram: f32,
    pub shape: [f32; SHAPE],
}

/// Logit added per matching rule family (at most three): the rules are precise general
/// signals, evidence the n-grams may underweight on unseen phrasings. Fixed, not fit: data
/// cannot show what they are worth on phrasings it lacks.
pub const RULE_WEIGHT: f32 = 2.0;

impl Default for Stack {
    /// The n-gram logit plus [`RULE_WEIGHT`] per rule family matched.
    fn default() -> Self {
        let mut shape = [0.0; SHAPE];
        shape[0] = RULE_WEIGHT;
        Stack {
            bias: 0.0,
            ngram: 1.0,
            shape,
        }
    }
}

impl Stack {
    /// The logit of a reading with n-gram logit `z` and shape inputs `x`.
    pub fn logit(&self, z: f32, x: &[f32; SHAPE]) -> f32 {
        self.bias + self.ngram * z + self.shape.iter().zip(x).map(|(w, x)| w * x).sum::<f32>()
    }
}

/// How much more of a message's last half than of its first is punctuation-laden tokens, or
/// words no prose holds, at or above which it ends like an optimised suffix.
const SUFFIX_TAIL: f32 = 0.3;

impl Shape {
    /// A whole message that ends the way an optimised adversarial suffix does: two or more
    /// brackets left open or closing nothing in its last half, or a last half far fuller of
    /// punctuation-laden tokens or of words no prose holds than its first.
    pub fn suffix_like(&self) -> bool {
        self.view == View::Whole
            && (self.unbalanced >= 2
                || self.tail >= SUFFIX_TAIL
                || self.unknown_tail >= SUFFIX_TAIL)
    }

    /// The stacking layer's inputs.
    pub fn vector(&self) -> [f32; SHAPE] {
        let mut v = [0.0; SHAPE];
        v[0] = self.hits.min(3) as f32;
        v[1] = self.odd;
        v[2] = self.tail.max(0.0);
        v[3] = f32::from(u8::from(self.view == View::Window));
        v[4] = f32::from(u8::from(self.view == View::Line));
        v[5] = f32::from(u8::from(self.hidden));
        match self.overlap {
            Some(Overlap {
                shared: Some(k), ..
            }) => v[6 + usize::from(k.min(4))] = 1.0,
            Some(Overlap { shared: None, .. }) => v[11] = 1.0,
            None => {}
        }
        v[13] = f32::from(u8::from(self.overlap.is_some_and(|o| o.off_format)));
        v[14] = self.unknown_tail.max(0.0);
        v[15] = f32::from(u8::from(self.unbalanced >= 2));
        v[12] = f32::from(u8::from(self.hits > 0 && self.view != View::Whole));
        v
    }
}
