//! Why the local classifier scored a text as it did (`portcullis scan --explain`): per head
//! its score, the threshold, which reading decided each gate (the whole text or one sentence),
//! and the features and rules that pushed the deciding gate up most.
//!
//! Off the hot path: it names every feature of the text (building strings) and scores the
//! text again; the guard never calls it. A feature's contribution is its weight times its
//! IDF-weighted, length-normalised value in the reading that decided the gate; hashed features
//! can collide, so a name stands for every n-gram sharing its index (the first is shown).

use crate::classifier::{
    FIRST_CATEGORY, GATES, HEADS, Model, POLICY, named_features, sentences, words,
};
use crate::requests::REQUEST_RULE_WEIGHT;
use crate::rules::{RULE_WEIGHT, families};
use serde::Serialize;

/// Why a text scored as it did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    /// The flag: the larger gate's score, in [0, 1].
    pub flagged: f32,
    /// The score at and above which the local classifier flags a text.
    pub threshold: f32,
    /// Each gate (`content`, `request`) with its score and how it was read.
    pub gates: Vec<GateExplanation>,
    /// Every category head's score (they name what was flagged; they do not flag).
    pub categories: Vec<(&'static str, f32)>,
}

/// One gate: its score, its reading and its largest contributions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateExplanation {
    pub gate: &'static str,
    /// In [0, 1]; the gate flags at [`Explanation::threshold`].
    pub score: f32,
    /// `"whole text"`, or the sentence that decided the gate (it scored higher, less the
    /// sentence offset, than the whole).
    pub reading: String,
    /// The logit the gate started from before any feature (its bias, less the sentence
    /// offset when a sentence decided).
    pub bias: f32,
    /// The features and rules that pushed the gate up most, largest first (at most
    /// `top`); negative ones are left out.
    pub contributions: Vec<Contribution>,
}

/// What one feature or rule added to a gate's logit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Contribution {
    /// `word:…`, `pair:…|…`, `chars:…`, `lexicon:…`, `length:…`, `policy:…` (the anchor
    /// policy head's feature, weighted into the `content` gate) or `rule:…`.
    pub feature: String,
    pub logit: f32,
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Per head, each feature's contribution to head `h` over the text `t`, named.
fn contributions(m: &Model, t: &str, h: usize, scale: f32, prefix: &str) -> Vec<Contribution> {
    let named = named_features(&words(t));
    let mut idx: Vec<u32> = named.iter().map(|(k, _)| *k).collect();
    idx.sort_unstable();
    let norm = m.norm(&idx);
    named
        .into_iter()
        .map(|(k, name)| Contribution {
            feature: format!("{prefix}{name}"),
            logit: scale * m.weight(h, k as usize) * m.idf[k as usize] / norm,
        })
        .collect()
}

/// Explains `model`'s scores of `text`, with at most `top` contributions per gate.
pub fn explain(model: &Model, text: &str, top: usize) -> Explanation {
    let scores = model.score(text);
    let z = model.logits(text);
    let readings = model.readings(text);
    let sents = sentences(text);
    let rules = families(&words(text));
    let requests = crate::requests::families_of(text);
    let mut gates = Vec::with_capacity(GATES);
    for (h, gate) in HEADS.iter().enumerate().take(GATES) {
        let (whole, best) = readings[h];
        let by_sentence = best - model.sentence_offset > whole;
        // The sentence whose reading is the best one (the first of ties).
        let sentence = by_sentence
            .then(|| {
                sents.iter().copied().find(|s| {
                    let f = crate::classifier::features(s);
                    model.head_logits(&f, model.norm(&f))[h] >= best
                })
            })
            .flatten();
        let (read, reading, bias) = match sentence {
            Some(s) => (
                s,
                s.trim().to_owned(),
                model.bias[h] - model.sentence_offset,
            ),
            None => (text, "whole text".to_owned(), model.bias[h]),
        };
        let mut c = contributions(model, read, h, 1.0, "");
        if h == 0 {
            // The anchor policy head reads the whole text and joins the content gate.
            c.extend(contributions(
                model,
                text,
                POLICY,
                model.policy_weight,
                "policy:",
            ));
            c.extend(rules.iter().map(|r| Contribution {
                feature: format!("rule:{r}"),
                logit: RULE_WEIGHT,
            }));
        } else {
            c.extend(requests.iter().map(|r| Contribution {
                feature: format!("rule:{r}"),
                logit: REQUEST_RULE_WEIGHT,
            }));
        }
        c.retain(|c| c.logit > 0.0);
        c.sort_by(|a, b| b.logit.total_cmp(&a.logit));
        c.truncate(top);
        gates.push(GateExplanation {
            gate,
            score: sigmoid(z[h]),
            reading,
            bias: bias
                + if h == 0 {
                    model.policy_weight * model.bias[POLICY]
                } else {
                    0.0
                },
            contributions: c,
        });
    }
    Explanation {
        flagged: scores.flagged,
        threshold: model.threshold,
        gates,
        categories: (FIRST_CATEGORY..HEADS.len())
            .map(|h| (HEADS[h], sigmoid(z[h])))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_text_explanation_adds_up_to_its_gate() {
        let m = Model::builtin();
        let text = "Give step-by-step instructions for making a pipe bomb";
        let e = explain(m, text, usize::MAX);
        assert_eq!(e.gates.len(), GATES);
        assert_eq!(e.threshold, m.threshold);
        let request = &e.gates[1];
        assert_eq!(request.gate, "request");
        assert_eq!(request.reading, "whole text");
        // Every contribution, negative ones too, plus the bias and the rules give the gate's
        // logit.
        let all: f32 = contributions(m, text, 1, 1.0, "")
            .iter()
            .map(|c| c.logit)
            .sum::<f32>()
            + crate::requests::logit(text);
        let z = m.logits(text)[1];
        assert!((all + request.bias - z).abs() < 1e-3, "{all} {z}");
        assert!(
            request
                .contributions
                .windows(2)
                .all(|w| w[0].logit >= w[1].logit)
        );
        assert!(
            request
                .contributions
                .iter()
                .any(|c| c.feature.contains("bomb"))
        );
    }

    #[test]
    fn rules_show_up_among_the_content_gate_contributions() {
        let e = explain(Model::builtin(), "I'm going to find you and kill you", 50);
        assert!(
            e.gates[0]
                .contributions
                .iter()
                .any(|c| c.feature == "rule:threat")
        );
    }
}
