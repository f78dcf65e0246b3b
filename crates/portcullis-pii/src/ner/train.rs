//! Training (feature `lab`): gold tags from entity spans, the lexicon built from them, and
//! the averaged perceptron that fits a [`Model`].

use super::features::{NF, atoms, features};
use super::lexicon::{COMMON, Lexicon};
use super::model::Model;
use super::tagger::best_allowed;
use super::tags::{NT, O, tag_for, tag_type};
use super::tokens::Token;
use crate::EntityType;
use portcullis_core::hash::fnv1a;
use std::ops::Range;

/// Builds the lexicon from tokenised training texts and their gold tags.
pub fn lexicon<'a>(examples: impl Iterator<Item = (&'a str, &'a [Token], &'a [usize])>) -> Lexicon {
    let mut lex = Lexicon::default();
    for (text, toks, gold) in examples {
        for (t, g) in toks.iter().zip(gold) {
            let w = &text[t.span.clone()];
            if !w.chars().any(char::is_alphanumeric) {
                continue;
            }
            let lower = fnv1a(w.to_lowercase().as_bytes());
            let mut bits = tag_type(*g).map_or(0, |ty| 1u16 << ty);
            if *g == O && w.chars().all(|c| !c.is_uppercase()) {
                bits |= COMMON;
            }
            *lex.entry(lower).or_default() |= bits;
        }
    }
    lex.retain(|_, b| *b != 0);
    lex
}

/// Averaged-perceptron training (the code behind `portcullis train pii`).
#[derive(Debug)]
pub struct Trainer {
    weights: std::collections::HashMap<u32, Acc>,
    step: u64,
    /// Hashes of the lower-case words seen, for the starter-word gate.
    vocabulary: std::collections::HashSet<u64>,
    lexicon: Lexicon,
}

#[derive(Debug, Clone)]
struct Acc {
    w: [f32; NT],
    total: [f32; NT],
    stamp: [u64; NT],
}

impl Trainer {
    /// A trainer whose features may consult `lexicon` (built from the same training data).
    pub fn new(lexicon: Lexicon) -> Self {
        Trainer {
            weights: std::collections::HashMap::new(),
            step: 0,
            vocabulary: std::collections::HashSet::new(),
            lexicon,
        }
    }

    /// One pass over one example: decode with current weights, update where wrong. `lexicon`
    /// is what the features may know about this example's words — built without it, so
    /// the model learns how far the lexicon reaches on unseen text (the shipped lexicon is
    /// the trainer's own).
    pub fn learn(&mut self, text: &str, toks: &[Token], gold: &[usize], lexicon: &Lexicon) {
        self.learn_where(text, toks, gold, lexicon, |_| true);
    }

    /// Ordinary prose with no annotations: every word is taken to be outside an entity except
    /// capitalised words inside a sentence (they may be names nobody labelled), which are not
    /// learned from. This is what teaches the tagger that "Summarize …" starts no name.
    pub fn learn_prose(&mut self, text: &str, toks: &[Token], lexicon: &Lexicon) {
        let a = atoms(text, toks, lexicon);
        let gold = vec![O; toks.len()];
        self.learn_where(text, toks, &gold, lexicon, |i| {
            !a[i].maybe || a[i].first == 1
        });
    }

    fn learn_where(
        &mut self,
        text: &str,
        toks: &[Token],
        gold: &[usize],
        lexicon: &Lexicon,
        trusted: impl Fn(usize) -> bool,
    ) {
        let a = atoms(text, toks, lexicon);
        self.vocabulary
            .extend(a.iter().filter(|x| !x.maybe).map(|x| x.lower));
        let mut f = [0u32; NF];
        let mut prev = O;
        let mut prev2 = O;
        for (i, &truth) in gold.iter().enumerate().take(toks.len()) {
            self.step += 1;
            features(&a, i, prev, prev2, &mut f);
            let mut s = [0f32; NT];
            for k in f {
                if let Some(acc) = self.weights.get(&k) {
                    for (x, w) in s.iter_mut().zip(acc.w) {
                        *x += w;
                    }
                }
            }
            let (guess, _) = best_allowed(&s, prev, a[i].numeric);
            if guess != truth && trusted(i) {
                for k in f {
                    let e = self.weights.entry(k).or_insert_with(|| Acc {
                        w: [0.0; NT],
                        total: [0.0; NT],
                        stamp: [0; NT],
                    });
                    for (t, d) in [(truth, 1.0f32), (guess, -1.0)] {
                        e.total[t] += (self.step - e.stamp[t]) as f32 * e.w[t];
                        e.stamp[t] = self.step;
                        e.w[t] += d;
                    }
                }
            }
            prev2 = prev;
            prev = guess;
        }
    }

    /// The averaged weights as a model, keeping the `keep` features with the most weight
    /// (the long tail barely moves a decision and costs cache misses on every token).
    pub fn finish(&self, keep: usize) -> Model {
        let step = self.step.max(1);
        let mut pairs: Vec<(u32, [f32; NT])> = Vec::with_capacity(self.weights.len());
        for (k, e) in &self.weights {
            let avg: [f32; NT] = std::array::from_fn(|t| {
                (e.total[t] + (step - e.stamp[t]) as f32 * e.w[t]) / step as f32
            });
            pairs.push((*k, avg));
        }
        let mass = |w: &[f32; NT]| w.iter().map(|x| x.abs()).sum::<f32>();
        pairs.sort_by(|a, b| mass(&b.1).total_cmp(&mass(&a.1)).then(a.0.cmp(&b.0)));
        pairs.truncate(keep);
        pairs.sort_by_key(|p| p.0);
        let mut vocabulary: Vec<u64> = self.vocabulary.iter().copied().collect();
        vocabulary.sort_unstable();
        Model::from_weights(&pairs, &vocabulary, self.lexicon.clone())
    }
}

/// Gold tags for `toks` from entity spans (byte ranges), for training.
pub fn gold_tags(toks: &[Token], spans: &[(EntityType, Range<usize>)]) -> Vec<usize> {
    let mut tags = vec![O; toks.len()];
    for (e, r) in spans {
        let mut first = true;
        for (i, t) in toks.iter().enumerate() {
            if t.span.start < r.end && r.start < t.span.end {
                if let Some(tag) = tag_for(*e, first) {
                    tags[i] = tag;
                }
                first = false;
            }
        }
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ner::{Tagger, tokenize};

    #[test]
    fn a_trained_model_round_trips_and_learns_a_pattern() {
        let data = [
            ("My name is Alice Smith", vec![(EntityType::Person, 11..22)]),
            ("My name is Bob Jones", vec![(EntityType::Person, 11..20)]),
            ("I live in Paris", vec![(EntityType::Location, 10..15)]),
            ("I live in Oslo", vec![(EntityType::Location, 10..14)]),
        ];
        let prepared: Vec<(&str, Vec<Token>, Vec<usize>)> = data
            .iter()
            .map(|(text, spans)| {
                let toks = tokenize(text);
                let gold = gold_tags(&toks, spans);
                (*text, toks, gold)
            })
            .collect();
        let mut tr = Trainer::new(lexicon(
            prepared
                .iter()
                .map(|(t, k, g)| (*t, k.as_slice(), g.as_slice())),
        ));
        let none = Lexicon::default();
        for _ in 0..5 {
            for (text, spans) in &data {
                let toks = tokenize(text);
                tr.learn(text, &toks, &gold_tags(&toks, spans), &none);
            }
        }
        let m = Model::from_bytes(&tr.finish(usize::MAX).to_bytes()).expect("round trip");
        let spans = Tagger::new(&m).spans("My name is Carol Smith");
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].entity, EntityType::Person);
        assert_eq!(spans[0].span, 11..22);
    }
}
