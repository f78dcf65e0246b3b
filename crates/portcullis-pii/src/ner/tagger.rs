//! Tagging: greedy left-to-right decoding under BIO constraints, and the entity spans it
//! yields; the tagger with the shipped weights.

use super::features::{NF, atoms, features};
use super::lexicon::{COMMON, Lexicon};
use super::model::Model;
use super::shape;
use super::tags::{NT, O, TYPES, i_tag, is_inside, tag_type};
use super::tokens::{Token, tokenize};
use crate::{Candidate, EntityType};
use std::ops::Range;
use std::sync::OnceLock;

/// Longest entity (in tokens, punctuation included) per type of [`TYPES`]: a tagger that
/// runs on past these is lost ("lorem lorem lorem …" is not one long name).
const MAX_TOKENS: [usize; 9] = [8, 10, 12, 40, 12, 8, 4, 3, 4];

static WEIGHTS: &[u8] = include_bytes!("../../model/pii-ner.bin");

/// Tags text with a model.
#[derive(Debug, Clone, Copy)]
pub struct Tagger<'m> {
    model: &'m Model,
}

/// One tagged span, in the tagged text's byte offsets.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub entity: EntityType,
    pub span: Range<usize>,
    /// Mean per-token margin of the chosen tag, squashed to (0, 1).
    pub confidence: f32,
}

impl Tagger<'static> {
    /// The tagger with the shipped weights.
    pub fn builtin() -> Tagger<'static> {
        static M: OnceLock<Model> = OnceLock::new();
        Tagger {
            model: M.get_or_init(|| {
                Model::from_bytes(WEIGHTS).unwrap_or_else(|| {
                    Model::from_quantised(&[], 1.0, Vec::new(), Lexicon::default())
                })
            }),
        }
    }
}

impl<'m> Tagger<'m> {
    /// A tagger over `model` (training and evaluation use their own).
    pub fn new(model: &'m Model) -> Self {
        Tagger { model }
    }

    /// The tag sequence for `tokens` (greedy, BIO-constrained), with each tag's margin;
    /// `gate`: the text is written with capitals, so a lower-case word starts no name.
    fn decode(&self, text: &str, toks: &[Token], gate: bool) -> Vec<(usize, f32)> {
        let a = atoms(text, toks, &self.model.lexicon);
        let mut tags: Vec<(usize, i32)> = Vec::with_capacity(toks.len());
        let mut f = [0u32; NF];
        for i in 0..toks.len() {
            let prev = if i > 0 { tags[i - 1].0 } else { O };
            let prev2 = if i > 1 { tags[i - 2].0 } else { O };
            // Outside an entity, a lower-case word starts one only if the model has learnt
            // that word as an entity word (in all-lower-case text: unless it is an ordinary
            // word); everything else is `O` without scoring (most of prose), which is what
            // makes the tagger cheap.
            // A word the data knows only as an ordinary word begins nothing at the start of a
            // sentence ("Compare …", "Brainstorm …") or in lower case.
            let ordinary = a[i].lex == u64::from(COMMON) && (a[i].first == 1 || !a[i].maybe);
            let closed =
                prev == O && (ordinary || !a[i].maybe && gate && !self.model.starter(a[i].lower));
            if a[i].ident || closed {
                tags.push((O, 0));
                continue;
            }
            features(&a, i, prev, prev2, &mut f);
            let mut s = [0i32; NT];
            for k in f {
                if let Some(row) = self.model.row(k) {
                    for (acc, w) in s.iter_mut().zip(row) {
                        *acc += i32::from(*w);
                    }
                }
            }
            // Entities have a plausible length: a run that has reached it must end here.
            let run = tags
                .iter()
                .rev()
                .take_while(|(t, _)| tag_type(*t) == tag_type(prev) && *t != O)
                .count();
            if let Some(ty) = tag_type(prev)
                && run >= MAX_TOKENS[ty]
            {
                s[i_tag(ty)] = i32::MIN / 2;
            }
            tags.push(best_allowed(&s, prev, a[i].numeric));
        }
        tags.into_iter()
            .map(|(t, m)| (t, m as f32 * self.model.scale))
            .collect()
    }

    /// Entity spans in `text`, trimmed to the value (see [`shape::tidy`]) and kept only when
    /// they have the shape of their kind (see [`shape::plausible`]).
    pub fn spans(&self, text: &str) -> Vec<Span> {
        let toks = tokenize(text);
        // In text written all in lower case, capitals say nothing: every word is a candidate.
        let cased = shape::cased(text);
        let tags = self.decode(text, &toks, cased);
        let mut spans = spans_of(&toks, &tags);
        spans.retain_mut(|s| {
            s.span = shape::tidy(text, s.span.clone(), s.entity, cased);
            match shape::plausible(text, &s.span, s.entity, cased) {
                Some(entity) => {
                    s.entity = entity;
                    true
                }
                None => false,
            }
        });
        spans
    }

    /// Whether the training text had `word` written in lower case as an ordinary word ("will",
    /// "may", "mark"): a name made of such a word is matched alone only where it cannot be
    /// the ordinary word.
    pub fn ordinary_word(&self, word: &str) -> bool {
        let lower = portcullis_core::hash::fnv1a(word.to_lowercase().as_bytes());
        self.model
            .lexicon
            .get(&lower)
            .is_some_and(|bits| bits & COMMON != 0)
    }

    /// Adds the tagger's spans to a scan's candidates.
    pub(crate) fn find(&self, text: &str, out: &mut Vec<Candidate>) {
        if self.model.is_empty() {
            return;
        }
        for s in self.spans(text) {
            out.push(Candidate {
                entity: s.entity,
                span: s.span,
                score: s.confidence,
                recognizer: "ner",
                priority: 1,
            });
        }
    }
}

/// The best tag that may follow `prev` (an `I-T` only continues a `T`), and its margin over
/// the runner-up.
pub(super) fn best_allowed<T: Copy + PartialOrd + std::ops::Sub<Output = T> + Default>(
    s: &[T; NT],
    prev: usize,
    numeric: bool,
) -> (usize, T) {
    // Names of people, places, organisations, titles and nationalities do not begin with a
    // digit; house numbers, dates, ages and postcodes do.
    let wordy = |t: usize| {
        tag_type(t).is_some_and(|ty| {
            matches!(
                TYPES[ty],
                EntityType::Person
                    | EntityType::Location
                    | EntityType::Organization
                    | EntityType::Title
                    | EntityType::Nrp
            )
        })
    };
    let allowed = |t: usize| {
        (!is_inside(t) || tag_type(prev) == tag_type(t) && prev != O)
            && !(numeric && !is_inside(t) && wordy(t))
    };
    let mut best = O;
    let mut second: Option<T> = None;
    for t in 1..NT {
        if !allowed(t) {
            continue;
        }
        if s[t] > s[best] {
            second = Some(second.map_or(s[best], |x| if s[best] > x { s[best] } else { x }));
            best = t;
        } else if second.is_none_or(|x| s[t] > x) {
            second = Some(s[t]);
        }
    }
    let margin = second.map_or(T::default(), |x| s[best] - x);
    (best, margin)
}

fn spans_of(toks: &[Token], tags: &[(usize, f32)]) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::new();
    let mut open: Option<(usize, Range<usize>, f32, usize)> = None;
    let close = |o: Option<(usize, Range<usize>, f32, usize)>, out: &mut Vec<Span>| {
        if let Some((t, span, m, n)) = o {
            let mean = m / n as f32;
            out.push(Span {
                entity: TYPES[t],
                span,
                confidence: 1.0 / (1.0 + (-(mean + 1.0)).exp()),
            });
        }
    };
    for (tok, (tag, margin)) in toks.iter().zip(tags) {
        match tag_type(*tag) {
            Some(t) if is_inside(*tag) => {
                if let Some(o) = open.as_mut() {
                    o.1.end = tok.span.end;
                    o.2 += margin;
                    o.3 += 1;
                } else {
                    open = Some((t, tok.span.clone(), *margin, 1));
                }
            }
            Some(t) => {
                close(open.take(), &mut out);
                open = Some((t, tok.span.clone(), *margin, 1));
            }
            None => close(open.take(), &mut out),
        }
    }
    close(open, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ner::tags::b_tag;

    #[test]
    fn bio_constraint_forbids_orphan_inside_tags() {
        let mut s = [0i32; NT];
        s[i_tag(0)] = 10;
        s[b_tag(1)] = 5;
        assert_eq!(best_allowed(&s, O, false).0, b_tag(1));
        assert_eq!(best_allowed(&s, b_tag(0), false).0, i_tag(0));
        assert_eq!(
            best_allowed(&s, O, true).0,
            O,
            "no location starts with a digit"
        );
    }

    #[test]
    fn the_shipped_model_loads() {
        assert!(!Tagger::builtin().model.is_empty());
    }

    #[test]
    fn ordinary_words_are_known() {
        let t = Tagger::builtin();
        assert!(t.ordinary_word("will") && t.ordinary_word("May"));
        assert!(!t.ordinary_word("Zbigniew"));
    }
}
